package vlan

// Low-level kernel operations, each a single netlink request or sysctl write
// in the calling thread's network namespace. They look devices up by name on
// every call, so undo closures keep working after a link was re-created with
// a new ifindex.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// findLink returns the link called name, or nil if there is none.
func findLink(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) {
			return nil, nil
		}
		return nil, err
	}
	if got := l.Attrs().Name; got != name {
		// LinkByName also matches alternative names (ip link property add altname).
		return nil, fmt.Errorf("%s is an alternative name of interface %s; configure voipgw with its real name", name, got)
	}
	return l, nil
}

func linkNameByIndex(index int) string {
	if index == 0 {
		return ""
	}
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return ""
	}
	return l.Attrs().Name
}

func isUp(l netlink.Link) bool { return l.Attrs().Flags&net.FlagUp != 0 }

// isVlanOn reports whether l is an 802.1Q VLAN with the given id on parent.
func isVlanOn(l netlink.Link, parent string, vid int) bool {
	v, ok := l.(*netlink.Vlan)
	if !ok || v.VlanId != vid || v.NetNsID >= 0 {
		return false
	}
	if v.VlanProtocol != netlink.VLAN_PROTOCOL_UNKNOWN && v.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q {
		return false
	}
	return linkNameByIndex(v.ParentIndex) == parent
}

// describeLink says what l is, for error messages.
func describeLink(l netlink.Link) string {
	if v, ok := l.(*netlink.Vlan); ok {
		proto := ""
		if v.VlanProtocol == netlink.VLAN_PROTOCOL_8021AD {
			proto = " 802.1ad"
		}
		return fmt.Sprintf("a%s vlan with id %d on %s", proto, v.VlanId, linkNameByIndex(v.ParentIndex))
	}
	return "a " + l.Type() + " interface"
}

// createVlan creates the 802.1Q link name on parent and marks it as
// voipgw's with the interface alias. Nothing is left behind on error.
func createVlan(name, parent string, vid int) error {
	p, err := findLink(parent)
	if err != nil {
		return fmt.Errorf("look up parent %s: %w", parent, err)
	}
	if p == nil {
		return fmt.Errorf("parent %s does not exist", parent)
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.ParentIndex = p.Attrs().Index
	v := &netlink.Vlan{LinkAttrs: la, VlanId: vid, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
	if err := netlink.LinkAdd(v); err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) {
			return fmt.Errorf("%w (the kernel has no 802.1Q support: load module 8021q / install kmod-8021q)", err)
		}
		return err
	}
	// The alias is set separately: RTM_NEWLINK ignores IFLA_IFALIAS on creation.
	if err := netlink.LinkSetAlias(v, Alias); err != nil {
		if derr := netlink.LinkDel(v); derr != nil {
			return errors.Join(fmt.Errorf("set alias %q: %w", Alias, err), fmt.Errorf("delete it again: %w", derr))
		}
		return fmt.Errorf("set alias %q: %w", Alias, err)
	}
	return nil
}

func setAlias(name, alias string) error {
	l, err := findLink(name)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("%s does not exist", name)
	}
	return netlink.LinkSetAlias(l, alias)
}

// deleteLink deletes the link called name; a missing link is not an error.
func deleteLink(name string) error {
	l, err := findLink(name)
	if err != nil || l == nil {
		return err
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
		return err
	}
	return nil
}

func setUp(name string) error {
	l, err := findLink(name)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("%s does not exist", name)
	}
	return netlink.LinkSetUp(l)
}

// setDown brings name down without losing IPv6 addresses. Linux flushes the
// IPv6 addresses of an interface that goes down (keep_addr_on_down=0, the
// default), which would destroy addresses an administrator added by hand
// while voipgw had the link up. keep_addr_on_down=1 is set just for the
// transition and restored right after; it keeps static global addresses,
// link-local ones are regenerated on the next up anyway.
func setDown(name string) error {
	l, err := findLink(name)
	if err != nil || l == nil {
		return err
	}
	if !isUp(l) {
		return nil
	}
	key := ifSysctl("ipv6", name, "keep_addr_on_down")
	old, rerr := readSysctl(key)
	restore := false
	if rerr == nil && old != "1" {
		if err := writeSysctl(key, "1"); err != nil {
			return fmt.Errorf("set %s=1 to keep IPv6 addresses: %w", key, err)
		}
		restore = true
	}
	err = netlink.LinkSetDown(l)
	if restore {
		if werr := writeSysctl(key, old); werr != nil {
			err = errors.Join(err, fmt.Errorf("restore %s=%s: %w", key, old, werr))
		}
	}
	return err
}

// retryDump retries a netlink dump the kernel interrupted because the table
// changed under it (NLM_F_DUMP_INTR).
func retryDump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 10 {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// linkAddrs lists the addresses on the link called name (nil if it does not exist).
func linkAddrs(name string) ([]netlink.Addr, error) {
	l, err := findLink(name)
	if err != nil || l == nil {
		return nil, err
	}
	return retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
}

func allAddrs() ([]netlink.Addr, error) {
	return retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_ALL) })
}

func prefixOf(a netlink.Addr) netip.Prefix {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones)
}

func hasPrefix(addrs []netlink.Addr, p netip.Prefix) bool {
	return slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return prefixOf(a) == p })
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addAddr adds p to the link called name. IPv6 addresses are added with
// IFA_F_NODAD: otherwise the address stays "tentative" during Duplicate
// Address Detection (about a second, and indefinitely while the link has no
// carrier), and the SIP proxy and firewall set up right after Apply could not
// bind to it or use it as a source address. The address is the statically
// configured gateway of a segment the router owns, so skipping DAD trades a
// check for a misconfiguration that cannot normally happen for a usable
// address at once. flags may add further IFA_F_* flags (used when putting
// back an address exactly as it was).
func addAddr(name string, p netip.Prefix, flags int) error {
	l, err := findLink(name)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("%s does not exist", name)
	}
	a := &netlink.Addr{IPNet: ipNet(p), Flags: flags}
	if p.Addr().Is6() {
		a.Flags |= syscall.IFA_F_NODAD
	}
	err = netlink.AddrAdd(l, a)
	if err != nil && p.Addr().Is6() && errors.Is(err, syscall.EACCES) {
		if v, _ := readSysctl(ifSysctl("ipv6", name, "disable_ipv6")); v == "1" {
			return fmt.Errorf("%w: IPv6 is disabled on %s (%s=1)", err, name, ifSysctl("ipv6", name, "disable_ipv6"))
		}
	}
	return err
}

// delAddr removes p from the link called name; a missing address or link is
// not an error.
func delAddr(name string, p netip.Prefix) error {
	l, err := findLink(name)
	if err != nil || l == nil {
		return err
	}
	err = netlink.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)})
	if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENODEV) {
		return nil
	}
	return err
}

// filteringBridge reports whether l is a bridge with vlan_filtering on.
func filteringBridge(l netlink.Link) bool {
	b, ok := l.(*netlink.Bridge)
	return ok && b.VlanFiltering != nil && *b.VlanFiltering
}

// bridgeVlans lists the bridge VLAN entries of the device called dev (a
// bridge port, or the bridge itself for its "self" entries).
func bridgeVlans(dev string) ([]nl.BridgeVlanInfo, error) {
	l, err := findLink(dev)
	if err != nil || l == nil {
		return nil, err
	}
	m, err := retryDump(netlink.BridgeVlanList)
	if err != nil {
		return nil, err
	}
	var out []nl.BridgeVlanInfo
	for _, v := range m[int32(l.Attrs().Index)] {
		out = append(out, *v)
	}
	return out, nil
}

func findVID(entries []nl.BridgeVlanInfo, vid int) (nl.BridgeVlanInfo, bool) {
	for _, e := range entries {
		if int(e.Vid) == vid {
			return e, true
		}
	}
	return nl.BridgeVlanInfo{}, false
}

func pvidOf(entries []nl.BridgeVlanInfo) int {
	for _, e := range entries {
		if e.PortVID() {
			return int(e.Vid)
		}
	}
	return 0
}

// bridgeVlanAdd adds (or updates the flags of) a bridge VLAN entry.
func bridgeVlanAdd(e BridgeVLAN) error {
	l, err := findLink(e.Dev)
	if err != nil {
		return err
	}
	if l == nil {
		return fmt.Errorf("%s does not exist", e.Dev)
	}
	return netlink.BridgeVlanAdd(l, uint16(e.VID), e.PVID, e.Untagged, e.Self, false)
}

// bridgeVlanDel removes a bridge VLAN entry voipgw added. For a port whose
// PVID it took over, the PVID goes back to PrevPVID (with that entry's own
// untagged flag unchanged), if that VLAN is still on the port and no other
// PVID was set meanwhile. Missing entries or devices are not errors.
func bridgeVlanDel(e BridgeVLAN) error {
	l, err := findLink(e.Dev)
	if err != nil || l == nil {
		return err
	}
	err = netlink.BridgeVlanDel(l, uint16(e.VID), false, false, e.Self, false)
	if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENODEV) {
		return err
	}
	if e.Self || !e.PVID || e.PrevPVID == 0 || e.PrevPVID == e.VID {
		return nil
	}
	entries, err := bridgeVlans(e.Dev)
	if err != nil {
		return fmt.Errorf("read vlans of %s to restore pvid %d: %w", e.Dev, e.PrevPVID, err)
	}
	prev, ok := findVID(entries, e.PrevPVID)
	if !ok || pvidOf(entries) != 0 {
		return nil
	}
	return netlink.BridgeVlanAdd(l, uint16(e.PrevPVID), true, prev.EngressUntag(), false, false)
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, value string) error {
	f, err := os.OpenFile(sysctlPath(key), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
