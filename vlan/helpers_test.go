package vlan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/voipgw/voipgw/lab"
)

// in runs fn inside ns on a locked thread and fails the test on error. fn
// must not call t.Fatal (it runs on another goroutine); t.Errorf is fine.
func in(t *testing.T, ns *lab.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatalf("in netns %s: %v", ns.Name, err)
	}
}

func attrs(name string) netlink.LinkAttrs {
	la := netlink.NewLinkAttrs()
	la.Name = name
	return la
}

func addVeth(name, peer string) error {
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs(name), PeerName: peer}); err != nil {
		return fmt.Errorf("add veth %s/%s: %w", name, peer, err)
	}
	return nil
}

// moveTo moves link name of the current namespace into ns.
func moveTo(name string, ns *lab.NS) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetNsFd(l, int(ns.Handle())); err != nil {
		return fmt.Errorf("move %s to %s: %w", name, ns.Name, err)
	}
	return nil
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	return netlink.LinkSetUp(l)
}

// handAddr adds an address the way an administrator would (IPv6 without
// waiting for DAD, so tests need not sleep).
func handAddr(name, prefix string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	p := netip.MustParsePrefix(prefix)
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = syscall.IFA_F_NODAD
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", prefix, name, err)
	}
	return nil
}

func setSysctl(key, value string) error {
	if err := writeSysctl(key, value); err != nil {
		return fmt.Errorf("set %s=%s: %w", key, value, err)
	}
	return nil
}

// snapshot lists, one fact a line and sorted, everything Apply and Remove may
// touch in the current namespace: links with up state, alias, vlan
// identity, master; their addresses except IPv6 link-local (the kernel
// regenerates those); the sysctls voipgw sets or uses; the bridge vlan table.
func snapshot() ([]string, error) {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		a := l.Attrs()
		line := fmt.Sprintf("link %s type=%s up=%v alias=%q", a.Name, l.Type(), isUp(l), a.Alias)
		if v, ok := l.(*netlink.Vlan); ok {
			line += fmt.Sprintf(" vid=%d parent=%s", v.VlanId, names[v.ParentIndex])
		}
		if a.MasterIndex != 0 {
			line += " master=" + names[a.MasterIndex]
		}
		out = append(out, line)
		addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			if p := prefixOf(ad); !p.Addr().IsLinkLocalUnicast() {
				out = append(out, fmt.Sprintf("addr %s %v", a.Name, p))
			}
		}
		for _, k := range []string{
			ifSysctl("ipv4", a.Name, "forwarding"),
			ifSysctl("ipv6", a.Name, "forwarding"),
			ifSysctl("ipv6", a.Name, "accept_ra"),
			ifSysctl("ipv6", a.Name, "keep_addr_on_down"),
			ifSysctl("ipv6", a.Name, "disable_ipv6"),
		} {
			v, err := readSysctl(k)
			out = append(out, fmt.Sprintf("sysctl %s=%s%v", k, v, errOrEmpty(err)))
		}
	}
	for _, k := range []string{sysIPv4Forward, sysIPv6Forward, "net.ipv6.conf.default.forwarding", "net.ipv4.conf.all.forwarding"} {
		v, err := readSysctl(k)
		out = append(out, fmt.Sprintf("sysctl %s=%s%v", k, v, errOrEmpty(err)))
	}
	vlans, err := retryDump(netlink.BridgeVlanList)
	if err != nil {
		return nil, fmt.Errorf("list bridge vlans: %w", err)
	}
	for idx, entries := range vlans {
		for _, e := range entries {
			out = append(out, fmt.Sprintf("bridge-vlan %s vid=%d pvid=%v untagged=%v", names[int(idx)], e.Vid, e.PortVID(), e.EngressUntag()))
		}
	}
	sort.Strings(out)
	return out, nil
}

func errOrEmpty(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}

func snap(t *testing.T, ns *lab.NS) []string {
	t.Helper()
	var s []string
	in(t, ns, func() (err error) { s, err = snapshot(); return err })
	return s
}

// sameKernel reports the facts that differ between two snapshots.
func sameKernel(t *testing.T, what string, before, after []string) {
	t.Helper()
	var gone, added []string
	for _, l := range before {
		if !slices.Contains(after, l) {
			gone = append(gone, l)
		}
	}
	for _, l := range after {
		if !slices.Contains(before, l) {
			added = append(added, l)
		}
	}
	if len(gone)+len(added) > 0 {
		t.Errorf("%s: the kernel is not as it was before\n  gone: %s\n  new:  %s", what, strings.Join(gone, "\n        "), strings.Join(added, "\n        "))
	}
}

func has(lines []string, want string) bool { return slices.Contains(lines, want) }

func wantChanges(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: changes %q lack %q", what, got, w)
		}
	}
}

func wantErr(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want one mentioning %q", what, parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not mention %q", what, err, p)
		}
	}
}

// apply runs Apply inside ns.
func apply(t *testing.T, ns *lab.NS, d Desired, prev State) (State, []string, func() error, error) {
	t.Helper()
	var (
		st      State
		changes []string
		undo    func() error
		aerr    error
	)
	in(t, ns, func() error {
		st, changes, undo, aerr = Apply(context.Background(), d, prev)
		return nil
	})
	return st, changes, undo, aerr
}

func mustApply(t *testing.T, ns *lab.NS, d Desired, prev State) (State, []string, func() error) {
	t.Helper()
	st, changes, undo, err := apply(t, ns, d, prev)
	if err != nil {
		t.Fatalf("Apply(%+v): %v", d, err)
	}
	return st, changes, undo
}

func mustRemove(t *testing.T, ns *lab.NS, s State) []string {
	t.Helper()
	var (
		changes []string
		rerr    error
	)
	in(t, ns, func() error { changes, rerr = Remove(context.Background(), s); return nil })
	if rerr != nil {
		t.Fatalf("Remove(%+v): %v (changes %q)", s, rerr, changes)
	}
	return changes
}

// undoIn runs an undo func returned by Apply inside ns.
func undoIn(t *testing.T, ns *lab.NS, undo func() error) {
	t.Helper()
	in(t, ns, func() error { return undo() })
}

func read(t *testing.T, ns *lab.NS, name string) Status {
	t.Helper()
	var st Status
	in(t, ns, func() (err error) { st, err = Read(name); return err })
	return st
}

// readOperUp reads name, waiting up to 2s for its operational state to
// become "up" (the kernel's linkwatch may report carrier changes late).
func readOperUp(t *testing.T, ns *lab.NS, name string) Status {
	t.Helper()
	var s Status
	for start := time.Now(); time.Since(start) < 2*time.Second; time.Sleep(50 * time.Millisecond) {
		if s = read(t, ns, name); s.OperState == "up" {
			break
		}
	}
	return s
}

// udpReaches sends a datagram from ns `from` to dst (an address of ns `to`)
// and reports whether it arrived, with its source address. It retries a few
// times: the first datagram can wait on neighbour resolution.
func udpReaches(t *testing.T, from, to *lab.NS, dst netip.AddrPort, wait time.Duration) (netip.Addr, bool) {
	t.Helper()
	var conn *net.UDPConn
	in(t, to, func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
		return err
	})
	defer conn.Close()
	var snd *net.UDPConn
	in(t, from, func() (err error) {
		snd, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	defer snd.Close()
	buf := make([]byte, 64)
	for try := 0; try < 3; try++ {
		if _, err := snd.Write([]byte("OPTIONS sip:gw SIP/2.0")); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Logf("send to %v: %v", dst, err)
		}
		conn.SetReadDeadline(time.Now().Add(wait / 3))
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err == nil && strings.HasPrefix(string(buf[:n]), "OPTIONS") {
			return src.Addr().Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// probeErr tells whether err means the kernel lacks a feature.
func unsupported(err error) bool {
	if err == nil {
		return false
	}
	s := strings.ToLower(err.Error())
	return errors.Is(err, syscall.EOPNOTSUPP) || strings.Contains(s, "not supported") || strings.Contains(s, "unknown device type")
}

const skip8021Q = "skipping: kernel has no 802.1Q support (8021q); these run in the QEMU VM suite"

// require8021Q skips the test unless the kernel can create 802.1Q links; it
// tries one in ns and removes it again.
func require8021Q(t *testing.T, ns *lab.NS) {
	t.Helper()
	err := ns.Do(func() error {
		if err := addVeth("probe0", "probe1"); err != nil {
			return err
		}
		defer deleteLink("probe0")
		p, err := netlink.LinkByName("probe0")
		if err != nil {
			return err
		}
		la := attrs("probe0.9")
		la.ParentIndex = p.Attrs().Index
		return netlink.LinkAdd(&netlink.Vlan{LinkAttrs: la, VlanId: 9})
	})
	if unsupported(err) {
		t.Skip(skip8021Q)
	}
	if err != nil {
		t.Fatalf("probe 802.1Q support: %v", err)
	}
}

// requireBridgeVlanFiltering skips the test unless the kernel has bridge
// VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING).
func requireBridgeVlanFiltering(t *testing.T, ns *lab.NS) {
	t.Helper()
	err := ns.Do(func() error {
		on := true
		br := &netlink.Bridge{LinkAttrs: attrs("probebr0"), VlanFiltering: &on}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		defer deleteLink("probebr0")
		l, err := netlink.LinkByName("probebr0")
		if err != nil {
			return err
		}
		if !filteringBridge(l) {
			return fmt.Errorf("bridge created with vlan_filtering=1 reports it off: %w", syscall.EOPNOTSUPP)
		}
		return nil
	})
	if unsupported(err) {
		t.Skip("skipping: kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING); these run in the QEMU VM suite")
	}
	if err != nil {
		t.Fatalf("probe bridge vlan filtering: %v", err)
	}
}

func netlinkAddBridge(name string, vlanFiltering bool) error {
	br := &netlink.Bridge{LinkAttrs: attrs(name)}
	if vlanFiltering {
		br.VlanFiltering = &vlanFiltering
	}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", name, err)
	}
	return nil
}

func setMaster(port, bridge string) error {
	p, err := netlink.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s: %w", port, err)
	}
	b, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find %s: %w", bridge, err)
	}
	if err := netlink.LinkSetMaster(p, b); err != nil {
		return fmt.Errorf("enslave %s to %s: %w", port, bridge, err)
	}
	return nil
}
