package vlan

// Kernel tests of the 802.1Q path and of the OpenWrt DSA layout (802.1Q
// upper on a vlan-filtering bridge with untagged access ports). They need
// the 8021q module and CONFIG_BRIDGE_VLAN_FILTERING; they probe for them in
// their namespace and skip where they are missing (they run in the QEMU VM
// suite with a Debian kernel).

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/voipgw/voipgw/lab"
)

// trunkLab builds a gateway namespace whose port "trunk" (up: the
// administrator's trunk) is wired to "trunkp" in a switch namespace, where
// the phone side of VLAN 20 lives: trunkp.20 with 192.0.2.10/25 and
// 2001:db8:20::10/64.
func trunkLab(t *testing.T, tag string) (gw, sw *lab.NS) {
	gw = lab.TestNS(t, tag+"gw")
	require8021Q(t, gw)
	sw = lab.TestNS(t, tag+"sw")
	in(t, gw, func() error {
		if err := addVeth("trunk", "trunkp"); err != nil {
			return err
		}
		if err := moveTo("trunkp", sw); err != nil {
			return err
		}
		if err := linkUp("trunk"); err != nil {
			return err
		}
		return setSysctl(sysIPv4Forward, "0")
	})
	in(t, sw, func() error {
		if err := linkUp("trunkp"); err != nil {
			return err
		}
		if err := handVlan("trunkp.20", "trunkp", 20); err != nil {
			return err
		}
		if err := linkUp("trunkp.20"); err != nil {
			return err
		}
		if err := handAddr("trunkp.20", "192.0.2.10/25"); err != nil {
			return err
		}
		return handAddr("trunkp.20", "2001:db8:20::10/64")
	})
	return gw, sw
}

// handVlan creates a vlan the way an administrator would (no alias).
func handVlan(name, parent string, vid int) error {
	p, err := netlink.LinkByName(parent)
	if err != nil {
		return err
	}
	la := attrs(name)
	la.ParentIndex = p.Attrs().Index
	return netlink.LinkAdd(&netlink.Vlan{LinkAttrs: la, VlanId: vid})
}

var trunk20 = Desired{Name: "trunk.20", Parent: "trunk", VID: 20, Addrs: []netip.Prefix{gw4, gw6}}

func TestVLANCreateIdempotentRemove(t *testing.T) {
	gw, sw := trunkLab(t, "vcre")
	before := snap(t, gw)

	st, changes, _ := mustApply(t, gw, trunk20, State{})
	wantChanges(t, "apply", changes,
		"created vlan trunk.20 (vid 20 on trunk)",
		"set net.ipv6.conf.trunk/20.accept_ra=0 (was 1)",
		"set trunk.20 up",
		"added address 192.0.2.1/25 to trunk.20",
		"added address 2001:db8:20::1/64 to trunk.20",
		"set net.ipv4.ip_forward=1 (was 0)",
		"set net.ipv6.conf.all.forwarding=1 (was 0)",
	)
	want := State{
		Name: "trunk.20", Parent: "trunk", VID: 20, CreatedLink: true, SetLinkUp: true,
		AddedAddrs: []netip.Prefix{gw4, gw6},
		Sysctls: map[string]string{
			"net.ipv4.ip_forward":              "0",
			"net.ipv6.conf.all.forwarding":     "0",
			"net.ipv6.conf.trunk/20.accept_ra": "1",
		},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("state\n got %+v\nwant %+v", st, want)
	}

	s := readOperUp(t, gw, "trunk.20")
	if !s.Exists || s.Kind != "vlan" || s.Parent != "trunk" || s.VID != 20 || !s.OwnedByVoipgw ||
		!s.Up || s.OperState != "up" || !s.Forwarding4 || !s.Forwarding6 || s.MAC == "" {
		t.Errorf("Read = %+v", s)
	}
	for _, p := range []netip.Prefix{gw4, gw6} {
		if !slices.Contains(s.Addrs, p) {
			t.Errorf("Read addrs %v lack %v", s.Addrs, p)
		}
	}
	// Tagged frames of VID 20 from the switch reach the gateway address on
	// the vlan (the trunk itself has no address).
	if src, ok := udpReaches(t, sw, gw, netip.AddrPortFrom(gw4.Addr(), 5060), 3*time.Second); !ok || src != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("SIP over VLAN 20, IPv4: arrived=%v from %v", ok, src)
	}
	if src, ok := udpReaches(t, sw, gw, netip.AddrPortFrom(gw6.Addr(), 5060), 3*time.Second); !ok || src != netip.MustParseAddr("2001:db8:20::10") {
		t.Errorf("SIP over VLAN 20, IPv6: arrived=%v from %v", ok, src)
	}

	st2, changes2, _ := mustApply(t, gw, trunk20, st)
	if len(changes2) != 0 || !reflect.DeepEqual(st2, st) {
		t.Errorf("second apply: changes %q, state %+v; want none and %+v", changes2, st2, st)
	}

	removed := mustRemove(t, gw, st2)
	wantChanges(t, "remove", removed,
		"restored net.ipv4.ip_forward=0",
		"restored net.ipv6.conf.all.forwarding=0",
		"deleted vlan trunk.20 (vid 20 on trunk)",
	)
	if len(removed) != 3 {
		t.Errorf("remove changes %q, want exactly the three above", removed)
	}
	sameKernel(t, "after Remove", before, snap(t, gw))
	if s := read(t, gw, "trunk.20"); s.Exists {
		t.Errorf("Read after Remove = %+v", s)
	}
}

func TestVLANAdopt(t *testing.T) {
	gw, _ := trunkLab(t, "vadopt")
	in(t, gw, func() error { return handVlan("trunk.20", "trunk", 20) })
	before := snap(t, gw)

	st, changes, _ := mustApply(t, gw, trunk20, State{})
	if slices.ContainsFunc(changes, func(c string) bool { return c == "created vlan trunk.20 (vid 20 on trunk)" }) {
		t.Errorf("changes %q: the vlan existed", changes)
	}
	wantChanges(t, "adopt", changes, "set trunk.20 up", "added address 192.0.2.1/25 to trunk.20")
	if st.CreatedLink || !st.SetLinkUp {
		t.Errorf("state %+v: want adopted (CreatedLink false), brought up", st)
	}
	if s := read(t, gw, "trunk.20"); s.OwnedByVoipgw || s.Kind != "vlan" || s.VID != 20 {
		t.Errorf("Read = %+v: an adopted vlan keeps its alias", s)
	}
	// Adopted again from its own State: still not voipgw's.
	st2, changes2, _ := mustApply(t, gw, trunk20, st)
	if len(changes2) != 0 || st2.CreatedLink {
		t.Errorf("second apply: changes %q, state %+v", changes2, st2)
	}
	mustRemove(t, gw, st2)
	sameKernel(t, "after Remove (the adopted vlan stays, as it was)", before, snap(t, gw))
}

func TestVLANRefusesForeignInterface(t *testing.T) {
	gw, _ := trunkLab(t, "vforeign")
	in(t, gw, func() error {
		if err := addVeth("trunk.20", "trunk20p"); err != nil {
			return err
		}
		return handVlan("voice", "trunk", 30)
	})
	before := snap(t, gw)

	_, _, _, err := apply(t, gw, trunk20, State{})
	wantErr(t, "name taken by a veth", err, "interface trunk.20 already exists as a veth interface, not as vlan 20 on trunk")
	voice := Desired{Name: "voice", Parent: "trunk", VID: 20, Addrs: []netip.Prefix{gw4}}
	_, _, _, err = apply(t, gw, voice, State{})
	wantErr(t, "name taken by another vlan", err, "voice already exists as a vlan with id 30 on trunk")
	// Even a State claiming voipgw created "voice" does not make a
	// mismatching link voipgw's to change or delete.
	claim := State{Name: "voice", Parent: "trunk", VID: 20, CreatedLink: true, SetLinkUp: true}
	_, _, _, err = apply(t, gw, voice, claim)
	wantErr(t, "mismatching link claimed by State", err, "voice already exists as a vlan with id 30")
	removed := mustRemove(t, gw, claim)
	wantChanges(t, "remove of a mismatching claim", removed, "left voice alone: it is a vlan with id 30 on trunk now, not the vlan 20 on trunk voipgw created")
	sameKernel(t, "after the refused Applies", before, snap(t, gw))
}

func TestVLANRollbackDeletesCreatedLink(t *testing.T) {
	gw, _ := trunkLab(t, "vroll")
	// New links get IPv6 disabled: the vlan is created, then its IPv6
	// address fails.
	in(t, gw, func() error { return setSysctl("net.ipv6.conf.default.disable_ipv6", "1") })
	before := snap(t, gw)
	_, changes, _, err := apply(t, gw, trunk20, State{})
	wantErr(t, "apply", err, "add address 2001:db8:20::1/64 to trunk.20", "IPv6 is disabled on trunk.20")
	if changes != nil {
		t.Errorf("failed Apply returned changes %q", changes)
	}
	sameKernel(t, "after the failed Apply", before, snap(t, gw))
}

func TestVLANChangeVIDAndUndo(t *testing.T) {
	gw, sw := trunkLab(t, "vvid")
	before := snap(t, gw)
	v20 := Desired{Name: "voice", Parent: "trunk", VID: 20, Addrs: []netip.Prefix{gw4, gw6}}
	st20, _, _ := mustApply(t, gw, v20, State{})
	at20 := snap(t, gw)

	v30 := Desired{Name: "voice", Parent: "trunk", VID: 30, Addrs: []netip.Prefix{gw4, gw6}}
	st30, changes, undo := mustApply(t, gw, v30, st20)
	wantChanges(t, "vid change", changes, "deleted vlan voice (vid 20 on trunk)", "created vlan voice (vid 30 on trunk)")
	if s := read(t, gw, "voice"); s.VID != 30 || !s.OwnedByVoipgw || !st30.CreatedLink {
		t.Errorf("after the vid change: Read %+v, state %+v", s, st30)
	}
	// The caller's next step failed: back to vid 20, as it was.
	undoIn(t, gw, undo)
	sameKernel(t, "after undo", at20, snap(t, gw))
	if _, ok := udpReaches(t, sw, gw, netip.AddrPortFrom(gw4.Addr(), 5060), 3*time.Second); !ok {
		t.Error("after undo: SIP over VLAN 20 does not arrive")
	}
	mustRemove(t, gw, st20)
	sameKernel(t, "after Remove", before, snap(t, gw))
}

// dsaLab builds the OpenWrt DSA layout in a gateway namespace: br-lan with
// vlan_filtering=1, switch ports lan3 and lan4 (veths) in it. A phone is
// plugged into lan4 and a PC into lan3, each in its own namespace, both
// untagged, both numbered in 192.0.2.0/25. arp_ignore=1 makes the gateway
// answer ARP only on the interface that has the address, so an answer proves
// the frame arrived on the vlan upper and not on br-lan itself.
func dsaLab(t *testing.T, tag string) (gw, ph, pc *lab.NS) {
	gw = lab.TestNS(t, tag+"gw")
	require8021Q(t, gw)
	requireBridgeVlanFiltering(t, gw)
	ph = lab.TestNS(t, tag+"ph")
	pc = lab.TestNS(t, tag+"pc")
	in(t, gw, func() error {
		if err := netlinkAddBridge("br-lan", true); err != nil {
			return err
		}
		for _, p := range []struct {
			port, peer string
			ns         *lab.NS
		}{{"lan4", "phone0", ph}, {"lan3", "pc0", pc}} {
			if err := addVeth(p.port, p.peer); err != nil {
				return err
			}
			if err := moveTo(p.peer, p.ns); err != nil {
				return err
			}
			if err := setMaster(p.port, "br-lan"); err != nil {
				return err
			}
			if err := linkUp(p.port); err != nil {
				return err
			}
		}
		if err := linkUp("br-lan"); err != nil {
			return err
		}
		if err := setSysctl("net.ipv4.conf.all.arp_ignore", "1"); err != nil {
			return err
		}
		return setSysctl(sysIPv4Forward, "0")
	})
	for _, h := range []struct {
		ns        *lab.NS
		dev, addr string
	}{{ph, "phone0", "192.0.2.10/25"}, {pc, "pc0", "192.0.2.20/25"}} {
		in(t, h.ns, func() error {
			if err := linkUp(h.dev); err != nil {
				return err
			}
			return handAddr(h.dev, h.addr)
		})
	}
	return gw, ph, pc
}

func TestBridgeDSA(t *testing.T) {
	gw, ph, pc := dsaLab(t, "dsa")
	before := snap(t, gw)
	for _, w := range []string{"bridge-vlan lan4 vid=1 pvid=true untagged=true", "bridge-vlan br-lan vid=1 pvid=true untagged=true"} {
		if !has(before, w) {
			t.Fatalf("lab: %q missing from %q", w, before)
		}
	}

	d := Desired{Name: "br-lan.20", Parent: "br-lan", VID: 20, AccessPorts: []string{"lan4"}, Addrs: []netip.Prefix{gw4}}
	st, changes, _ := mustApply(t, gw, d, State{})
	wantChanges(t, "apply", changes,
		"added vid 20 to bridge br-lan itself (tagged)",
		"created vlan br-lan.20 (vid 20 on br-lan)",
		"added address 192.0.2.1/25 to br-lan.20",
		"made lan4 an untagged access port of vid 20 (pvid 20, was 1)",
	)
	wantBr := []BridgeVLAN{
		{Dev: "br-lan", VID: 20, Self: true},
		{Dev: "lan4", VID: 20, PVID: true, Untagged: true, PrevPVID: 1},
	}
	if !reflect.DeepEqual(st.BridgeVLANs, wantBr) || !st.CreatedLink {
		t.Errorf("state %+v, want created link and bridge vlans %+v", st, wantBr)
	}
	after := snap(t, gw)
	for _, w := range []string{
		"bridge-vlan br-lan vid=20 pvid=false untagged=false",
		"bridge-vlan lan4 vid=20 pvid=true untagged=true",
		"bridge-vlan lan4 vid=1 pvid=false untagged=true", // left in VID 1, see wantedBridgeVLANs
		"bridge-vlan lan3 vid=1 pvid=true untagged=true",
	} {
		if !has(after, w) {
			t.Errorf("bridge vlan table lacks %q:\n%q", w, after)
		}
	}

	// The phone's untagged frames land in VLAN 20 and reach br-lan.20; the
	// gateway's answers leave lan4 untagged.
	if src, ok := udpReaches(t, ph, gw, netip.AddrPortFrom(gw4.Addr(), 5060), 3*time.Second); !ok || src != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("phone on access port lan4 → gateway: arrived=%v from %v", ok, src)
	}
	if _, ok := udpReaches(t, gw, ph, netip.MustParseAddrPort("192.0.2.10:5060"), 3*time.Second); !ok {
		t.Error("gateway → phone on access port lan4: nothing arrived")
	}
	// The PC on lan3 stays in VLAN 1: it does not reach the VoIP gateway.
	if _, ok := udpReaches(t, pc, gw, netip.AddrPortFrom(gw4.Addr(), 5060), 1500*time.Millisecond); ok {
		t.Error("a PC in VLAN 1 (lan3) reached the VoIP gateway address")
	}

	st2, changes2, _ := mustApply(t, gw, d, st)
	if len(changes2) != 0 || !reflect.DeepEqual(st2, st) {
		t.Errorf("second apply: changes %q, state %+v", changes2, st2)
	}

	removed := mustRemove(t, gw, st2)
	wantChanges(t, "remove", removed,
		"removed vid 20 from bridge port lan4 (pvid back to 1)",
		"deleted vlan br-lan.20 (vid 20 on br-lan)",
		"removed vid 20 from bridge br-lan itself",
	)
	sameKernel(t, "after Remove", before, snap(t, gw))
}

func TestBridgeDSAEntriesVoipgwDidNotAdd(t *testing.T) {
	gw, _, _ := dsaLab(t, "dsaown")
	in(t, gw, func() error {
		// The admin already made lan4 a VoIP access port and carries the
		// VLAN on the bridge; lan3 carries it tagged (a trunk).
		br, err := netlink.LinkByName("br-lan")
		if err != nil {
			return err
		}
		lan4, err := netlink.LinkByName("lan4")
		if err != nil {
			return err
		}
		lan3, err := netlink.LinkByName("lan3")
		if err != nil {
			return err
		}
		if err := netlink.BridgeVlanAdd(br, 20, false, false, true, false); err != nil {
			return err
		}
		if err := netlink.BridgeVlanAdd(lan4, 20, true, true, false, false); err != nil {
			return err
		}
		return netlink.BridgeVlanAdd(lan3, 20, false, false, false, false)
	})
	before := snap(t, gw)

	d := Desired{Name: "br-lan.20", Parent: "br-lan", VID: 20, AccessPorts: []string{"lan4"}, Addrs: []netip.Prefix{gw4}}
	st, _, _ := mustApply(t, gw, d, State{})
	if len(st.BridgeVLANs) != 0 {
		t.Errorf("claimed bridge vlans %+v that were there before", st.BridgeVLANs)
	}
	mustRemove(t, gw, st)
	sameKernel(t, "after Remove (the admin's entries stay)", before, snap(t, gw))

	d.AccessPorts = []string{"lan3"}
	_, _, _, err := apply(t, gw, d, State{})
	wantErr(t, "tagged port as access port", err, "bridge port lan3 already carries vid 20, but not as pvid untagged")
	d.AccessPorts = []string{"pc0"}
	_, _, _, err = apply(t, gw, d, State{})
	wantErr(t, "access port elsewhere", err, "access port pc0 does not exist")
	sameKernel(t, "after the refused Applies", before, snap(t, gw))
}
