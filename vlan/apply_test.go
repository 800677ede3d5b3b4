package vlan

// Kernel tests of the dedicated-port path (VID 0) on veth pairs; they run
// wherever root can create network namespaces. Each test builds its own
// namespaces and lab.TestNS removes them when it ends.

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/voipgw/voipgw/lab"
)

var (
	gw4   = netip.MustParsePrefix("192.0.2.1/25")
	gw6   = netip.MustParsePrefix("2001:db8:20::1/64")
	phone = Desired{Name: "voice", Addrs: []netip.Prefix{gw4, gw6}}
)

// dedicatedLab builds a gateway namespace with the dedicated VoIP port
// "voice" (down, as a fresh port is), whose peer "phone0" is in a phone
// namespace, up, with 192.0.2.10/25 and 2001:db8:20::10/64.
func dedicatedLab(t *testing.T, tag string) (gw, ph *lab.NS) {
	gw = lab.TestNS(t, tag+"gw")
	ph = lab.TestNS(t, tag+"ph")
	in(t, gw, func() error {
		if err := addVeth("voice", "phone0"); err != nil {
			return err
		}
		if err := moveTo("phone0", ph); err != nil {
			return err
		}
		// A new namespace inherits ip_forward from the host; start from 0.
		return setSysctl(sysIPv4Forward, "0")
	})
	in(t, ph, func() error {
		if err := linkUp("phone0"); err != nil {
			return err
		}
		if err := handAddr("phone0", "192.0.2.10/25"); err != nil {
			return err
		}
		return handAddr("phone0", "2001:db8:20::10/64")
	})
	return gw, ph
}

// singleLab builds one namespace with veth voice/voicepeer, both down.
func singleLab(t *testing.T, tag string) *lab.NS {
	ns := lab.TestNS(t, tag)
	in(t, ns, func() error {
		if err := addVeth("voice", "voicepeer"); err != nil {
			return err
		}
		return setSysctl(sysIPv4Forward, "0")
	})
	return ns
}

func TestSysctlFollowsThreadNetns(t *testing.T) {
	ns := lab.TestNS(t, "sysctl")
	host, err := readSysctl(sysIPv4Forward)
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"0": "1", "1": "0"}[host]
	in(t, ns, func() error { return writeSysctl(sysIPv4Forward, other) })
	var inside string
	in(t, ns, func() (err error) { inside, err = readSysctl(sysIPv4Forward); return err })
	if inside != other {
		t.Errorf("ip_forward read back in the namespace = %s, want %s", inside, other)
	}
	if now, _ := readSysctl(sysIPv4Forward); now != host {
		t.Fatalf("writing ip_forward in the namespace changed the host's: %s → %s", host, now)
	}
	// Per-interface entries exist only where the interface is.
	in(t, ns, func() error { return addVeth("nsonly0", "nsonly1") })
	if _, err := os.Stat(sysctlPath(ifSysctl("ipv4", "nsonly0", "forwarding"))); err == nil {
		t.Error("the namespace's interface is visible in the host's /proc/sys/net")
	}
	in(t, ns, func() error { _, err := readSysctl(ifSysctl("ipv4", "nsonly0", "forwarding")); return err })
}

func TestApplyDedicatedPort(t *testing.T) {
	gw, ph := dedicatedLab(t, "ded")
	before := snap(t, gw)

	st, changes, _ := mustApply(t, gw, phone, State{})
	wantChanges(t, "first apply", changes,
		"set net.ipv6.conf.voice.accept_ra=0 (was 1)",
		"set voice up",
		"added address 192.0.2.1/25 to voice",
		"added address 2001:db8:20::1/64 to voice",
		"set net.ipv4.ip_forward=1 (was 0)",
		"set net.ipv6.conf.all.forwarding=1 (was 0)",
	)
	want := State{
		Name: "voice", SetLinkUp: true,
		AddedAddrs: []netip.Prefix{gw4, gw6},
		Sysctls: map[string]string{
			"net.ipv4.ip_forward":           "0",
			"net.ipv6.conf.all.forwarding":  "0",
			"net.ipv6.conf.voice.accept_ra": "1",
		},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("state\n got %+v\nwant %+v", st, want)
	}

	// The IPv6 address is usable at once (IFA_F_NODAD): binding to a
	// tentative address would fail with EADDRNOTAVAIL.
	if src, ok := udpReaches(t, ph, gw, netip.AddrPortFrom(gw6.Addr(), 5060), 3*time.Second); !ok || src != netip.MustParseAddr("2001:db8:20::10") {
		t.Errorf("SIP over IPv6 from the phone: arrived=%v from %v", ok, src)
	}
	if src, ok := udpReaches(t, ph, gw, netip.AddrPortFrom(gw4.Addr(), 5060), 3*time.Second); !ok || src != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("SIP over IPv4 from the phone: arrived=%v from %v", ok, src)
	}

	s := readOperUp(t, gw, "voice")
	if !s.Exists || s.Kind != "veth" || !s.Up || s.OwnedByVoipgw || s.VID != 0 || s.Parent != "" ||
		!s.Forwarding4 || !s.Forwarding6 || s.MAC == "" || s.OperState != "up" {
		t.Errorf("Read = %+v", s)
	}
	for _, p := range []netip.Prefix{gw4, gw6} {
		if !slices.Contains(s.Addrs, p) {
			t.Errorf("Read addrs %v lack %v", s.Addrs, p)
		}
	}

	st2, changes2, _ := mustApply(t, gw, phone, st)
	if len(changes2) != 0 {
		t.Errorf("second apply changed %q, want nothing", changes2)
	}
	if !reflect.DeepEqual(st2, st) {
		t.Errorf("second apply state %+v, want %+v", st2, st)
	}

	// The caller persists State as JSON between runs.
	b, err := json.Marshal(st2)
	if err != nil {
		t.Fatal(err)
	}
	var saved State
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	removed := mustRemove(t, gw, saved)
	wantChanges(t, "remove", removed,
		"restored net.ipv4.ip_forward=0",
		"restored net.ipv6.conf.all.forwarding=0",
		"restored net.ipv6.conf.voice.accept_ra=1",
		"removed address 2001:db8:20::1/64 from voice",
		"removed address 192.0.2.1/25 from voice",
		"set voice down",
	)
	sameKernel(t, "after Remove", before, snap(t, gw))
	if again := mustRemove(t, gw, saved); len(again) != 0 {
		t.Errorf("second Remove changed %q, want nothing", again)
	}
	if s := read(t, gw, "voice"); s.Up || s.Forwarding4 || s.Forwarding6 || len(s.Addrs) != 0 {
		t.Errorf("Read after Remove = %+v", s)
	}
}

func TestHandAddedAddressesSurviveRemove(t *testing.T) {
	ns := singleLab(t, "hand")
	in(t, ns, func() error {
		// Before voipgw: the admin's own address, and the gateway address
		// voipgw wants, already there.
		if err := handAddr("voice", "198.51.100.7/24"); err != nil {
			return err
		}
		return handAddr("voice", "192.0.2.1/25")
	})
	before := snap(t, ns)
	st, changes, _ := mustApply(t, ns, phone, State{})
	if !reflect.DeepEqual(st.AddedAddrs, []netip.Prefix{gw6}) {
		t.Errorf("AddedAddrs = %v, want only %v: 192.0.2.1/25 was there before", st.AddedAddrs, gw6)
	}
	if slices.Contains(changes, "added address 192.0.2.1/25 to voice") {
		t.Errorf("changes %q claim the pre-existing address", changes)
	}
	// While voipgw runs, the admin adds more by hand.
	in(t, ns, func() error {
		if err := handAddr("voice", "203.0.113.5/24"); err != nil {
			return err
		}
		return handAddr("voice", "2001:db8:99::5/64")
	})
	mustRemove(t, ns, st)
	after := snap(t, ns)
	for _, w := range []string{
		"addr voice 198.51.100.7/24", "addr voice 192.0.2.1/25",
		"addr voice 203.0.113.5/24", "addr voice 2001:db8:99::5/64",
		"link voice type=veth up=false alias=\"\"",
		"sysctl net.ipv6.conf.voice.keep_addr_on_down=0",
	} {
		if !has(after, w) {
			t.Errorf("after Remove: missing %q in\n%q", w, after)
		}
	}
	if has(after, "addr voice 2001:db8:20::1/64") {
		t.Error("after Remove: voipgw's 2001:db8:20::1/64 is still there")
	}
	// Apart from the admin's later additions, all is as before.
	var trimmed []string
	for _, l := range after {
		if l != "addr voice 203.0.113.5/24" && l != "addr voice 2001:db8:99::5/64" {
			trimmed = append(trimmed, l)
		}
	}
	sameKernel(t, "after Remove", before, trimmed)
}

func TestApplyLeavesPreexistingSettings(t *testing.T) {
	ns := singleLab(t, "pre")
	in(t, ns, func() error {
		if err := linkUp("voice"); err != nil {
			return err
		}
		if err := setSysctl(sysIPv4Forward, "1"); err != nil {
			return err
		}
		return setSysctl(ifSysctl("ipv6", "voice", "accept_ra"), "0")
	})
	before := snap(t, ns)
	st, changes, _ := mustApply(t, ns, phone, State{})
	if st.SetLinkUp {
		t.Error("SetLinkUp recorded for a link that was already up")
	}
	for _, k := range []string{sysIPv4Forward, "net.ipv6.conf.voice.accept_ra"} {
		if _, ok := st.Sysctls[k]; ok {
			t.Errorf("State records %s, which already had voipgw's value", k)
		}
	}
	if slices.Contains(changes, "set voice up") {
		t.Errorf("changes %q", changes)
	}
	mustRemove(t, ns, st)
	sameKernel(t, "after Remove", before, snap(t, ns))
	if s := read(t, ns, "voice"); !s.Up {
		t.Error("Remove took down a link voipgw had not brought up")
	}
}

func TestApplyRollsBackMidway(t *testing.T) {
	ns := singleLab(t, "roll")
	// IPv6 is off on the port: the IPv4 address, the link up and the
	// accept_ra change succeed, then adding the IPv6 address fails.
	in(t, ns, func() error { return setSysctl(ifSysctl("ipv6", "voice", "disable_ipv6"), "1") })
	before := snap(t, ns)

	st, changes, undo, err := apply(t, ns, phone, State{})
	wantErr(t, "apply on a port with IPv6 disabled", err, "add address 2001:db8:20::1/64 to voice", "IPv6 is disabled on voice")
	if !st.IsZero() || changes != nil || undo == nil {
		t.Errorf("failed Apply returned state %+v, changes %q, undo nil=%v; want prev, none, a no-op", st, changes, undo == nil)
	}
	sameKernel(t, "after the failed Apply", before, snap(t, ns))

	// The same from a previous, different state: what the failed call
	// gave back (the old address) comes back too.
	in(t, ns, func() error { return setSysctl(ifSysctl("ipv6", "voice", "disable_ipv6"), "0") })
	v4only := Desired{Name: "voice", Addrs: []netip.Prefix{gw4}}
	st1, _, _ := mustApply(t, ns, v4only, State{})
	after1 := snap(t, ns)
	in(t, ns, func() error { return setSysctl(ifSysctl("ipv6", "voice", "disable_ipv6"), "1") })
	after1b := snap(t, ns)
	other := Desired{Name: "voice", Addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24"), gw6}}
	st2, _, _, err := apply(t, ns, other, st1)
	wantErr(t, "second apply", err, "2001:db8:20::1/64", "voice")
	if !reflect.DeepEqual(st2, st1) {
		t.Errorf("failed Apply returned %+v, want prev %+v", st2, st1)
	}
	sameKernel(t, "after the failed second Apply", after1b, snap(t, ns))
	in(t, ns, func() error { return setSysctl(ifSysctl("ipv6", "voice", "disable_ipv6"), "0") })
	sameKernel(t, "state of the first Apply", after1, snap(t, ns))
	mustRemove(t, ns, st1)
	in(t, ns, func() error { return setSysctl(ifSysctl("ipv6", "voice", "disable_ipv6"), "1") })
	sameKernel(t, "after Remove", before, snap(t, ns))
}

func TestApplyMissingDevice(t *testing.T) {
	ns := singleLab(t, "miss")
	before := snap(t, ns)
	_, _, _, err := apply(t, ns, Desired{Name: "nosuch0", Addrs: []netip.Prefix{gw4}}, State{})
	wantErr(t, "dedicated port that does not exist", err, "interface nosuch0 does not exist")
	_, _, _, err = apply(t, ns, Desired{Name: "voice.20", Parent: "nosuch1", VID: 20, Addrs: []netip.Prefix{gw4}}, State{})
	wantErr(t, "vlan on a parent that does not exist", err, "parent nosuch1 of vlan voice.20 (vid 20) does not exist")
	sameKernel(t, "after the failed Applies", before, snap(t, ns))
}

func TestApplyRefusesConflicts(t *testing.T) {
	ns := singleLab(t, "conf")
	in(t, ns, func() error {
		if err := addVeth("lan0", "lan1"); err != nil {
			return err
		}
		if err := handAddr("lan0", "198.51.100.1/24"); err != nil {
			return err
		}
		return handAddr("voice", "203.0.113.1/24")
	})
	before := snap(t, ns)
	for _, tc := range []struct {
		addr string
		want []string
	}{
		{"198.51.100.1/25", []string{"198.51.100.1 is already assigned to lan0"}},
		{"198.51.100.129/25", []string{"the VoIP subnet 198.51.100.128/25 overlaps 198.51.100.1/24 on lan0"}},
		{"203.0.113.1/25", []string{"voice already has 203.0.113.1/24", "prefix length"}},
	} {
		d := Desired{Name: "voice", Addrs: []netip.Prefix{netip.MustParsePrefix(tc.addr), gw6}}
		_, _, _, err := apply(t, ns, d, State{})
		wantErr(t, tc.addr, err, tc.want...)
	}
	sameKernel(t, "after the refused Applies", before, snap(t, ns))
}

func TestApplyReconcilesChanges(t *testing.T) {
	ns := singleLab(t, "recon")
	in(t, ns, func() error { return addVeth("voice2", "voice2peer") })
	before := snap(t, ns)
	st1, _, _ := mustApply(t, ns, phone, State{})

	// New address, IPv4 only: the old addresses and the IPv6 sysctls go.
	d2 := Desired{Name: "voice", Addrs: []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24")}}
	st2, changes, _ := mustApply(t, ns, d2, st1)
	wantChanges(t, "address change", changes,
		"restored net.ipv6.conf.all.forwarding=0",
		"restored net.ipv6.conf.voice.accept_ra=1",
		"removed address 2001:db8:20::1/64 from voice",
		"removed address 192.0.2.1/25 from voice",
		"added address 198.51.100.1/24 to voice",
	)
	if slices.Contains(changes, "set voice up") || slices.Contains(changes, "set voice down") {
		t.Errorf("changes %q touch the up state", changes)
	}
	want2 := State{Name: "voice", SetLinkUp: true, AddedAddrs: d2.Addrs, Sysctls: map[string]string{sysIPv4Forward: "0"}}
	if !reflect.DeepEqual(st2, want2) {
		t.Errorf("state\n got %+v\nwant %+v", st2, want2)
	}

	// Another port: voice is given back entirely, voice2 configured.
	d3 := Desired{Name: "voice2", Addrs: []netip.Prefix{gw4, gw6}}
	st3, changes, _ := mustApply(t, ns, d3, st2)
	wantChanges(t, "port change", changes,
		"removed address 198.51.100.1/24 from voice", "set voice down",
		"set voice2 up", "added address 192.0.2.1/25 to voice2",
	)
	if st3.Sysctls[sysIPv4Forward] != "0" {
		t.Errorf("the original ip_forward value was lost: %+v", st3.Sysctls)
	}
	s := read(t, ns, "voice")
	if s.Up || len(s.Addrs) != 0 {
		t.Errorf("old port after the move: %+v", s)
	}
	mustRemove(t, ns, st3)
	sameKernel(t, "after Remove", before, snap(t, ns))
}

func TestUndo(t *testing.T) {
	ns := singleLab(t, "undo")
	before := snap(t, ns)
	st1, _, undo1 := mustApply(t, ns, phone, State{})
	after1 := snap(t, ns)
	undoIn(t, ns, undo1)
	sameKernel(t, "after undo of the first Apply", before, snap(t, ns))
	undoIn(t, ns, undo1) // twice is harmless
	sameKernel(t, "after a second undo", before, snap(t, ns))

	st1, _, _ = mustApply(t, ns, phone, State{})
	sameKernel(t, "re-apply", after1, snap(t, ns))
	d2 := Desired{Name: "voice", Addrs: []netip.Prefix{netip.MustParsePrefix("203.0.113.1/24")}}
	_, changes, undo2 := mustApply(t, ns, d2, st1)
	if len(changes) == 0 {
		t.Fatal("second Apply changed nothing")
	}
	undoIn(t, ns, undo2) // the caller's nftables step failed: back to st1
	sameKernel(t, "after undo of the second Apply", after1, snap(t, ns))
	mustRemove(t, ns, st1)
	sameKernel(t, "after Remove", before, snap(t, ns))
}

func TestApplyCancelled(t *testing.T) {
	ns := singleLab(t, "cancel")
	before := snap(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var err error
	in(t, ns, func() error { _, _, _, err = Apply(ctx, phone, State{}); return nil })
	wantErr(t, "cancelled apply", err, "context canceled")
	sameKernel(t, "after the cancelled Apply", before, snap(t, ns))
}

func TestRemoveMissingThings(t *testing.T) {
	ns := singleLab(t, "gone")
	before := snap(t, ns)
	gone := State{
		Name: "gone0", Parent: "voice", VID: 20, CreatedLink: true, SetLinkUp: true,
		AddedAddrs:  []netip.Prefix{gw4},
		Sysctls:     map[string]string{"net.ipv6.conf.gone0.accept_ra": "1"},
		BridgeVLANs: []BridgeVLAN{{Dev: "br-gone", VID: 20, Self: true}, {Dev: "gone1", VID: 20, PVID: true, Untagged: true, PrevPVID: 1}},
	}
	if changes := mustRemove(t, ns, gone); len(changes) != 0 {
		t.Errorf("Remove of things already gone changed %q", changes)
	}
	// Addresses voipgw added to an existing port that someone removed.
	if changes := mustRemove(t, ns, State{Name: "voice", AddedAddrs: []netip.Prefix{gw4, gw6}}); len(changes) != 0 {
		t.Errorf("Remove of addresses already gone changed %q", changes)
	}
	sameKernel(t, "after Remove", before, snap(t, ns))
}

func TestRemoveLeavesSysctlChangedBySomeoneElse(t *testing.T) {
	ns := singleLab(t, "other")
	st, _, _ := mustApply(t, ns, phone, State{})
	in(t, ns, func() error { return setSysctl(ifSysctl("ipv6", "voice", "accept_ra"), "2") })
	changes := mustRemove(t, ns, st)
	wantChanges(t, "remove", changes, "left net.ipv6.conf.voice.accept_ra=2: changed by someone else since voipgw set it to 0")
	in(t, ns, func() error {
		if v, _ := readSysctl(ifSysctl("ipv6", "voice", "accept_ra")); v != "2" {
			t.Errorf("accept_ra = %s after Remove, want the admin's 2", v)
		}
		return nil
	})
}

func TestRead(t *testing.T) {
	ns := singleLab(t, "read")
	s := read(t, ns, "nosuch0")
	if s.Exists || s.Name != "nosuch0" {
		t.Errorf("Read of a missing interface = %+v", s)
	}
	s = read(t, ns, "voice")
	if !s.Exists || s.Kind != "veth" || s.Up || s.Forwarding4 || s.Forwarding6 || s.OwnedByVoipgw || len(s.Addrs) != 0 {
		t.Errorf("Read of a fresh veth = %+v", s)
	}
	in(t, ns, func() error {
		if err := handAddr("voice", "203.0.113.9/24"); err != nil {
			return err
		}
		return setAlias("voice", Alias)
	})
	s = read(t, ns, "voice")
	if !s.OwnedByVoipgw || !reflect.DeepEqual(s.Addrs, []netip.Prefix{netip.MustParsePrefix("203.0.113.9/24")}) {
		t.Errorf("Read = %+v", s)
	}
}

func TestAccessPortsNeedFilteringBridge(t *testing.T) {
	ns := singleLab(t, "plainbr")
	in(t, ns, func() error {
		if err := netlinkAddBridge("br0", false); err != nil {
			return err
		}
		return setMaster("voice", "br0")
	})
	before := snap(t, ns)
	d := Desired{Name: "br0.20", Parent: "br0", VID: 20, AccessPorts: []string{"voice"}, Addrs: []netip.Prefix{gw4}}
	_, _, _, err := apply(t, ns, d, State{})
	wantErr(t, "access ports on a plain bridge", err, "access ports [voice] need parent br0 to be a bridge with vlan_filtering=1", "bridge interface")
	sameKernel(t, "after the refused Apply", before, snap(t, ns))
}
