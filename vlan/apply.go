package vlan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Apply makes the kernel match d, starting from the State recorded by the
// previous Apply (the zero State the first time).
//
// It returns the new State, the changes it made in words (none when the
// kernel already matched), and an undo func that reverts exactly this call's
// changes, for when a later step of the caller (the nftables transaction)
// fails; undo must run in the same network namespace and returns the kernel
// to prev, so the caller then keeps prev. Undo is safe to call more than once.
//
// On error nothing is left half-applied: Apply reverts what this call changed
// before returning, and returns prev. The error names the step and the device
// or address that failed.
//
// Order: bridge entry on the bridge itself, the link, per-interface sysctls,
// link up, addresses, access ports, and the forwarding switches last, so
// traffic is only forwarded once the interface is complete. Things prev holds
// that d no longer wants are given back first.
func Apply(ctx context.Context, d Desired, prev State) (State, []string, func() error, error) {
	nothing := func() error { return nil }
	if err := d.Validate(); err != nil {
		return prev, nil, nothing, err
	}
	t := &txn{ctx: ctx}
	next, err := t.reconcile(d, prev)
	if err != nil {
		if uerr := t.rollback(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("vlan: undoing the partial apply failed too, the kernel may be half-configured: %w", uerr))
		}
		return prev, nil, nothing, err
	}
	var (
		once sync.Once
		uerr error
	)
	undo := func() error {
		once.Do(func() { uerr = t.rollback() })
		return uerr
	}
	return next, t.changes, undo, nil
}

// Remove deletes exactly what s says voipgw created or changed: the link if
// voipgw created it (only then), addresses it added to a pre-existing device,
// the up state it set, the bridge VLAN entries it added; and it restores the
// sysctls it changed to their previous values (unless someone else changed
// them since). Things already gone are not errors. Remove carries on after a
// failed step and reports all failures; running it again is harmless.
func Remove(ctx context.Context, s State) ([]string, error) {
	t := &txn{ctx: ctx, bestEffort: true}
	if err := t.release(s, false, nil, nil, nil); err != nil {
		t.errs = append(t.errs, err)
	}
	return t.changes, errors.Join(t.errs...)
}

// txn journals the kernel changes of one Apply or Remove.
type txn struct {
	ctx        context.Context
	bestEffort bool // Remove: go on after a failed step, collect the errors
	errs       []error
	changes    []string
	undos      []undoStep
}

type undoStep struct {
	what string
	fn   func() error
}

// did records a change made and the function that reverts it.
func (t *txn) did(change string, undo func() error) {
	t.changes = append(t.changes, change)
	t.undos = append(t.undos, undoStep{change, undo})
}

// note records something worth telling that is not a change.
func (t *txn) note(s string) { t.changes = append(t.changes, s) }

// fail passes err on (stopping the caller) unless the txn is best-effort,
// where it is collected and the caller goes on.
func (t *txn) fail(err error) error {
	if err == nil || !t.bestEffort {
		return err
	}
	t.errs = append(t.errs, err)
	return nil
}

func (t *txn) alive(step string) error {
	if err := t.ctx.Err(); err != nil {
		return fmt.Errorf("vlan: stopped before %s: %w", step, err)
	}
	return nil
}

// rollback reverts the recorded changes, newest first. It does not look at
// the context: an interrupted apply must still be reverted.
func (t *txn) rollback() error {
	var errs []error
	for i := len(t.undos) - 1; i >= 0; i-- {
		if err := t.undos[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("undo %q: %w", t.undos[i].what, err))
		}
	}
	t.undos = nil
	return errors.Join(errs...)
}

func (t *txn) reconcile(d Desired, prev State) (State, error) {
	next := State{Name: d.Name, Parent: d.Parent, VID: d.VID, Sysctls: map[string]string{}}
	same := prev.Name == d.Name && prev.Parent == d.Parent && prev.VID == d.VID

	// Check parent and access ports before changing anything.
	bridged := false
	if d.VID != 0 {
		if err := t.alive("looking up " + d.Parent); err != nil {
			return next, err
		}
		p, err := findLink(d.Parent)
		if err != nil {
			return next, fmt.Errorf("vlan: look up parent %s of %s: %w", d.Parent, d.Name, err)
		}
		if p == nil {
			return next, fmt.Errorf("vlan: parent %s of vlan %s (vid %d) does not exist", d.Parent, d.Name, d.VID)
		}
		bridged = filteringBridge(p)
		if len(d.AccessPorts) > 0 && !bridged {
			return next, fmt.Errorf("vlan: access ports %v need parent %s to be a bridge with vlan_filtering=1; it is %s", d.AccessPorts, d.Parent, describeLink(p))
		}
		for _, port := range d.AccessPorts {
			l, err := findLink(port)
			if err != nil {
				return next, fmt.Errorf("vlan: look up access port %s: %w", port, err)
			}
			if l == nil {
				return next, fmt.Errorf("vlan: access port %s does not exist", port)
			}
			if l.Attrs().MasterIndex != p.Attrs().Index {
				return next, fmt.Errorf("vlan: access port %s is not a port of bridge %s", port, d.Parent)
			}
		}
	}
	wantBr := wantedBridgeVLANs(d, bridged)
	wantSys := wantedSysctls(d)

	// Give back what prev holds and d no longer wants.
	var keepAddrs []netip.Prefix
	if same {
		keepAddrs = d.Addrs
	}
	if err := t.release(prev, same, keepAddrs, wantSys, wantBr); err != nil {
		return next, err
	}

	// The bridge carries the VLAN to its own (CPU) side, tagged.
	for _, e := range wantBr {
		if !e.Self {
			continue
		}
		claim, ok, err := t.ensureBridgeVLAN(e, prev.BridgeVLANs)
		if err != nil {
			return next, err
		}
		if ok {
			next.BridgeVLANs = append(next.BridgeVLANs, claim)
		}
	}

	if err := t.alive("setting up " + d.Name); err != nil {
		return next, err
	}
	created, err := t.ensureLink(d, prev, same)
	if err != nil {
		return next, err
	}
	next.CreatedLink = created

	for _, w := range wantSys {
		if isGlobalSysctl(w.key) {
			continue
		}
		if err := t.ensureSysctl(w, prev.Sysctls, next.Sysctls); err != nil {
			return next, err
		}
	}

	broughtUp, err := t.ensureUp(d.Name)
	if err != nil {
		return next, err
	}
	next.SetLinkUp = broughtUp || (same && prev.SetLinkUp)

	added, err := t.ensureAddrs(d, prev, same)
	if err != nil {
		return next, err
	}
	next.AddedAddrs = added

	for _, e := range wantBr {
		if e.Self {
			continue
		}
		claim, ok, err := t.ensureBridgeVLAN(e, prev.BridgeVLANs)
		if err != nil {
			return next, err
		}
		if ok {
			next.BridgeVLANs = append(next.BridgeVLANs, claim)
		}
	}

	for _, w := range wantSys {
		if !isGlobalSysctl(w.key) {
			continue
		}
		if err := t.ensureSysctl(w, prev.Sysctls, next.Sysctls); err != nil {
			return next, err
		}
	}
	if len(next.Sysctls) == 0 {
		next.Sysctls = nil
	}
	return next, nil
}

func isGlobalSysctl(key string) bool { return key == sysIPv4Forward || key == sysIPv6Forward }

// release gives back what prev holds except what is still wanted: sysctls,
// access ports, the link (all of it when !same; else only unwanted
// addresses), then bridge self entries. Remove calls it wanting nothing.
func (t *txn) release(prev State, same bool, keepAddrs []netip.Prefix, wantSys []sysctlWant, wantBr []BridgeVLAN) error {
	for _, key := range sortedSysctlKeys(prev.Sysctls) {
		if wantsSysctl(wantSys, key) {
			continue
		}
		if t.bestEffort && prev.CreatedLink && isIfSysctlOf(key, prev.Name) {
			// Remove deletes the link, and its sysctls with it. (Apply
			// restores them all the same: its undo may re-create the link.)
			continue
		}
		if err := t.alive("restoring " + key); err != nil {
			return err
		}
		if err := t.fail(t.restoreSysctl(key, prev.Sysctls[key])); err != nil {
			return err
		}
	}
	releaseBr := func(self bool) error {
		for i := len(prev.BridgeVLANs) - 1; i >= 0; i-- {
			e := prev.BridgeVLANs[i]
			if e.Self != self {
				continue
			}
			if _, wanted := findEntry(wantBr, e); wanted {
				continue
			}
			if err := t.alive("removing " + e.String()); err != nil {
				return err
			}
			if err := t.fail(t.releaseBridgeVLAN(e)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := releaseBr(false); err != nil {
		return err
	}
	if prev.Name != "" {
		if same {
			for i := len(prev.AddedAddrs) - 1; i >= 0; i-- {
				p := prev.AddedAddrs[i]
				if slices.Contains(keepAddrs, p) {
					continue
				}
				if err := t.alive("removing " + p.String()); err != nil {
					return err
				}
				if err := t.fail(t.removeAddr(prev.Name, p)); err != nil {
					return err
				}
			}
		} else if err := t.releaseLink(prev); err != nil {
			return err
		}
	}
	return releaseBr(true)
}

// releaseLink undoes what s holds on its link: deletes the link if voipgw
// created it, else removes the addresses voipgw added and brings it down if
// voipgw brought it up.
func (t *txn) releaseLink(s State) error {
	if err := t.alive("releasing " + s.Name); err != nil {
		return err
	}
	l, err := findLink(s.Name)
	if err != nil {
		return t.fail(fmt.Errorf("vlan: look up %s: %w", s.Name, err))
	}
	if l == nil {
		return nil // gone, and everything voipgw had put on it with it
	}
	if s.CreatedLink {
		if !isVlanOn(l, s.Parent, s.VID) {
			t.note(fmt.Sprintf("left %s alone: it is %s now, not the vlan %d on %s voipgw created", s.Name, describeLink(l), s.VID, s.Parent))
			return nil
		}
		return t.fail(t.deleteVlan(s.Name, s.Parent, s.VID))
	}
	for i := len(s.AddedAddrs) - 1; i >= 0; i-- {
		if err := t.fail(t.removeAddr(s.Name, s.AddedAddrs[i])); err != nil {
			return err
		}
	}
	if s.SetLinkUp {
		return t.fail(t.bringDown(s.Name))
	}
	return nil
}

// keptAddrFlags are the IFA_F_* flags worth restoring on an address put back.
const keptAddrFlags = 0x02 /*NODAD*/ | 0x100 /*MANAGETEMPADDR*/ | 0x200 /*NOPREFIXROUTE*/

// deleteVlan deletes the VLAN link voipgw created. Its undo re-creates it as
// it was: alias, the per-interface sysctls voipgw manages, up state and the
// static addresses it carried.
func (t *txn) deleteVlan(name, parent string, vid int) error {
	l, err := findLink(name)
	if err != nil || l == nil {
		return err
	}
	up := isUp(l)
	addrs, err := linkAddrs(name)
	if err != nil {
		return fmt.Errorf("vlan: list addresses of %s before deleting it: %w", name, err)
	}
	// The per-interface sysctls voipgw manages die with the link; a
	// re-created link would get the defaults.
	sysctls := map[string]string{}
	for _, key := range managedIfSysctls(name) {
		if v, err := readSysctl(key); err == nil {
			sysctls[key] = v
		}
	}
	if err := deleteLink(name); err != nil {
		return fmt.Errorf("vlan: delete vlan %s: %w", name, err)
	}
	t.did(fmt.Sprintf("deleted vlan %s (vid %d on %s)", name, vid, parent), func() error {
		if err := createVlan(name, parent, vid); err != nil {
			return err
		}
		for key, v := range sysctls {
			if err := writeSysctl(key, v); err != nil {
				return err
			}
		}
		if up {
			if err := setUp(name); err != nil {
				return err
			}
		}
		var errs []error
		for _, a := range addrs {
			p := prefixOf(a)
			if !p.IsValid() || p.Addr().IsLinkLocalUnicast() {
				continue
			}
			errs = append(errs, addAddr(name, p, a.Flags&keptAddrFlags))
		}
		return errors.Join(errs...)
	})
	return nil
}

func (t *txn) removeAddr(name string, p netip.Prefix) error {
	cur, err := linkAddrs(name)
	if err != nil {
		return fmt.Errorf("vlan: list addresses of %s: %w", name, err)
	}
	if !hasPrefix(cur, p) {
		return nil
	}
	if err := delAddr(name, p); err != nil {
		return fmt.Errorf("vlan: remove address %v from %s: %w", p, name, err)
	}
	t.did(fmt.Sprintf("removed address %v from %s", p, name), func() error { return addAddr(name, p, 0) })
	return nil
}

func (t *txn) bringDown(name string) error {
	l, err := findLink(name)
	if err != nil {
		return fmt.Errorf("vlan: look up %s: %w", name, err)
	}
	if l == nil || !isUp(l) {
		return nil
	}
	if err := setDown(name); err != nil {
		return fmt.Errorf("vlan: set %s down: %w", name, err)
	}
	t.did(fmt.Sprintf("set %s down", name), func() error { return setUp(name) })
	return nil
}

// restoreSysctl puts back the value a sysctl had before voipgw changed it,
// unless someone else changed it since (then it is theirs).
func (t *txn) restoreSysctl(key, orig string) error {
	cur, err := readSysctl(key)
	if isNotExist(err) {
		return nil // its interface is gone
	}
	if err != nil {
		return fmt.Errorf("vlan: read sysctl %s: %w", key, err)
	}
	if cur == orig {
		return nil
	}
	if cur != voipgwValue(key) {
		t.note(fmt.Sprintf("left %s=%s: changed by someone else since voipgw set it to %s", key, cur, voipgwValue(key)))
		return nil
	}
	if err := writeSysctl(key, orig); err != nil {
		return fmt.Errorf("vlan: restore sysctl %s=%s: %w", key, orig, err)
	}
	t.did(fmt.Sprintf("restored %s=%s", key, orig), func() error { return writeSysctl(key, cur) })
	return nil
}

func (t *txn) releaseBridgeVLAN(e BridgeVLAN) error {
	entries, err := bridgeVlans(e.Dev)
	if err != nil {
		return fmt.Errorf("vlan: read bridge vlans of %s: %w", e.Dev, err)
	}
	if _, ok := findVID(entries, e.VID); !ok {
		return nil
	}
	if err := bridgeVlanDel(e); err != nil {
		return fmt.Errorf("vlan: remove %s: %w", e, err)
	}
	msg := fmt.Sprintf("removed vid %d from bridge %s itself", e.VID, e.Dev)
	if !e.Self {
		msg = fmt.Sprintf("removed vid %d from bridge port %s", e.VID, e.Dev)
		if e.PrevPVID != 0 {
			msg += fmt.Sprintf(" (pvid back to %d)", e.PrevPVID)
		}
	}
	t.did(msg, func() error { return bridgeVlanAdd(e) })
	return nil
}

// ensureBridgeVLAN makes sure entry e exists. It returns the claim to record
// (ok) when voipgw added it, now or in an earlier apply.
func (t *txn) ensureBridgeVLAN(e BridgeVLAN, prev []BridgeVLAN) (BridgeVLAN, bool, error) {
	if err := t.alive("adding " + e.String()); err != nil {
		return e, false, err
	}
	entries, err := bridgeVlans(e.Dev)
	if err != nil {
		return e, false, fmt.Errorf("vlan: read bridge vlans of %s: %w", e.Dev, err)
	}
	pc, had := findEntry(prev, e)
	if cur, ok := findVID(entries, e.VID); ok {
		if e.Self && cur.EngressUntag() {
			return e, false, fmt.Errorf("vlan: bridge %s itself already has vid %d untagged, but its vlan upper needs the vid tagged (bridge vlan add dev %s vid %d self); voipgw does not change bridge vlan entries it did not add", e.Dev, e.VID, e.Dev, e.VID)
		}
		if !e.Self && !(cur.PortVID() && cur.EngressUntag()) {
			return e, false, fmt.Errorf("vlan: bridge port %s already carries vid %d, but not as pvid untagged; voipgw does not change bridge vlan entries it did not add", e.Dev, e.VID)
		}
		return pc, had, nil
	}
	msg := fmt.Sprintf("added vid %d to bridge %s itself (tagged)", e.VID, e.Dev)
	if !e.Self {
		e.PrevPVID = pvidOf(entries)
		if e.PrevPVID == 0 && had {
			e.PrevPVID = pc.PrevPVID
		}
		msg = fmt.Sprintf("made %s an untagged access port of vid %d (pvid %d, was %d)", e.Dev, e.VID, e.VID, e.PrevPVID)
		if e.PrevPVID == 0 {
			msg = fmt.Sprintf("made %s an untagged access port of vid %d (pvid %d, had none)", e.Dev, e.VID, e.VID)
		}
	}
	if err := bridgeVlanAdd(e); err != nil {
		return e, false, fmt.Errorf("vlan: add %s: %w", e, err)
	}
	t.did(msg, func() error { return bridgeVlanDel(e) })
	return e, true, nil
}

// ensureLink finds or creates the interface; created reports whether it is
// voipgw's (created now or recorded as created before).
func (t *txn) ensureLink(d Desired, prev State, same bool) (created bool, err error) {
	l, err := findLink(d.Name)
	if err != nil {
		return false, fmt.Errorf("vlan: look up %s: %w", d.Name, err)
	}
	if d.VID == 0 {
		if l == nil {
			return false, fmt.Errorf("vlan: interface %s does not exist (without a vlan id voipgw uses an existing port as is and never creates one)", d.Name)
		}
		return false, nil
	}
	if l != nil {
		if !isVlanOn(l, d.Parent, d.VID) {
			return false, fmt.Errorf("vlan: interface %s already exists as %s, not as vlan %d on %s; voipgw never changes or deletes an interface it did not create", d.Name, describeLink(l), d.VID, d.Parent)
		}
		ours := same && prev.CreatedLink
		if ours && l.Attrs().Alias != Alias {
			old := l.Attrs().Alias
			if err := setAlias(d.Name, Alias); err != nil {
				return ours, fmt.Errorf("vlan: set alias %q on %s: %w", Alias, d.Name, err)
			}
			t.did(fmt.Sprintf("set alias %q on %s", Alias, d.Name), func() error { return setAlias(d.Name, old) })
		}
		return ours, nil
	}
	if err := createVlan(d.Name, d.Parent, d.VID); err != nil {
		return false, fmt.Errorf("vlan: create vlan %s (vid %d on %s): %w", d.Name, d.VID, d.Parent, err)
	}
	t.did(fmt.Sprintf("created vlan %s (vid %d on %s)", d.Name, d.VID, d.Parent), func() error { return deleteLink(d.Name) })
	return true, nil
}

// ensureUp brings name up; setUp reports whether this call did.
func (t *txn) ensureUp(name string) (bool, error) {
	l, err := findLink(name)
	if err != nil {
		return false, fmt.Errorf("vlan: look up %s: %w", name, err)
	}
	if l == nil {
		return false, fmt.Errorf("vlan: %s vanished while being configured", name)
	}
	if isUp(l) {
		return false, nil
	}
	if err := setUp(name); err != nil {
		return false, fmt.Errorf("vlan: set %s up: %w", name, err)
	}
	t.did(fmt.Sprintf("set %s up", name), func() error { return setDown(name) })
	return true, nil
}

// ensureAddrs adds the addresses d wants and returns the ones voipgw added
// (now or before). An address already there is used but never claimed.
func (t *txn) ensureAddrs(d Desired, prev State, same bool) ([]netip.Prefix, error) {
	l, err := findLink(d.Name)
	if err != nil {
		return nil, fmt.Errorf("vlan: look up %s: %w", d.Name, err)
	}
	if l == nil {
		return nil, fmt.Errorf("vlan: %s vanished while being configured", d.Name)
	}
	idx := l.Attrs().Index
	cur, err := linkAddrs(d.Name)
	if err != nil {
		return nil, fmt.Errorf("vlan: list addresses of %s: %w", d.Name, err)
	}
	all, err := allAddrs()
	if err != nil {
		return nil, fmt.Errorf("vlan: list addresses: %w", err)
	}
	var added []netip.Prefix
	for _, p := range d.Addrs {
		if err := t.alive("adding " + p.String()); err != nil {
			return nil, err
		}
		if hasPrefix(cur, p) {
			if same && slices.Contains(prev.AddedAddrs, p) {
				added = append(added, p)
			}
			continue
		}
		for _, a := range cur {
			if q := prefixOf(a); q.Addr() == p.Addr() {
				return nil, fmt.Errorf("vlan: %s already has %v, which differs from the wanted %v in its prefix length; voipgw does not change addresses it did not add", d.Name, q, p)
			}
		}
		for _, a := range all {
			q := prefixOf(a)
			if a.LinkIndex == idx || !q.IsValid() || q.Addr().IsLinkLocalUnicast() {
				continue
			}
			other := linkNameByIndex(a.LinkIndex)
			if q.Addr() == p.Addr() {
				return nil, fmt.Errorf("vlan: add address %v to %s: %v is already assigned to %s", p, d.Name, p.Addr(), other)
			}
			if q.Masked().Overlaps(p.Masked()) {
				return nil, fmt.Errorf("vlan: add address %v to %s: the VoIP subnet %v overlaps %v on %s", p, d.Name, p.Masked(), q, other)
			}
		}
		if err := addAddr(d.Name, p, 0); err != nil {
			return nil, fmt.Errorf("vlan: add address %v to %s: %w", p, d.Name, err)
		}
		t.did(fmt.Sprintf("added address %v to %s", p, d.Name), func() error { return delAddr(d.Name, p) })
		added = append(added, p)
	}
	return added, nil
}

// ensureSysctl sets w, recording the value before voipgw first changed it.
func (t *txn) ensureSysctl(w sysctlWant, prev, next map[string]string) error {
	if err := t.alive("setting " + w.key); err != nil {
		return err
	}
	cur, err := readSysctl(w.key)
	if err != nil {
		return fmt.Errorf("vlan: read sysctl %s: %w", w.key, err)
	}
	orig, had := prev[w.key]
	if had {
		next[w.key] = orig
	}
	if cur == w.value {
		return nil
	}
	if err := writeSysctl(w.key, w.value); err != nil {
		return fmt.Errorf("vlan: set sysctl %s=%s: %w", w.key, w.value, err)
	}
	if !had {
		next[w.key] = cur
	}
	t.did(fmt.Sprintf("set %s=%s (was %s)", w.key, w.value, cur), func() error { return writeSysctl(w.key, cur) })
	return nil
}
