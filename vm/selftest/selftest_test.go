package selftest

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inVM reports whether the test runs under scripts/vm/run (its /init sets VOIPGW_VM=1).
// There a missing kernel feature is a failure; on a host it is a skip.
func inVM() bool { return os.Getenv("VOIPGW_VM") == "1" }

// missingFeature fails the test inside the VM and skips it elsewhere when err says
// that the kernel lacks a feature (the development hosts have no 802.1Q).
func missingFeature(t *testing.T, what string, err error) {
	t.Helper()
	if !inVM() && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)) {
		t.Skipf("skipping: this kernel cannot %s (%v); run it with scripts/vm/run", what, err)
	}
	t.Fatalf("%s: %v", what, err)
}

// newNetNS creates an anonymous network namespace, so that the test touches
// nothing outside it, and removes it at the end of the test.
func newNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (run it with scripts/vm/run)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("get current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New() // switches this thread into the new namespace
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to the original netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func newHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	// Only NETLINK_ROUTE: without a family list the handle also opens an XFRM
	// socket, which fails on kernels without xfrm_user (Debian's, most OpenWrt builds).
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in netns: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func TestVLANOnVeth(t *testing.T) {
	h := newHandle(t, newNetNS(t))

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vst0"}, PeerName: "vst1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	parent, err := h.LinkByName("vst0")
	if err != nil {
		t.Fatalf("read back veth: %v", err)
	}
	if err := h.LinkSetUp(parent); err != nil {
		t.Fatalf("set veth up: %v", err)
	}

	vlan := &netlink.Vlan{
		LinkAttrs:    netlink.LinkAttrs{Name: "vst0.42", ParentIndex: parent.Attrs().Index},
		VlanId:       42,
		VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
	}
	if err := h.LinkAdd(vlan); err != nil {
		missingFeature(t, "create an 802.1Q link", err)
	}
	got, err := h.LinkByName("vst0.42")
	if err != nil {
		t.Fatalf("read back vlan link: %v", err)
	}
	gv, ok := got.(*netlink.Vlan)
	if !ok {
		t.Fatalf("vst0.42 is a %q link, want vlan", got.Type())
	}
	if gv.VlanId != 42 || gv.ParentIndex != parent.Attrs().Index || gv.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q {
		t.Fatalf("vlan link read back as id %d parent %d proto %v; want 42, %d, 802.1Q",
			gv.VlanId, gv.ParentIndex, gv.VlanProtocol, parent.Attrs().Index)
	}
	if err := h.LinkSetUp(gv); err != nil {
		t.Fatalf("set vlan link up: %v", err)
	}

	if err := h.LinkDel(gv); err != nil {
		t.Fatalf("delete vlan link: %v", err)
	}
	if _, err := h.LinkByName("vst0.42"); err == nil {
		t.Fatalf("vlan link still exists after delete")
	}
	if err := h.LinkDel(parent); err != nil {
		t.Fatalf("delete veth: %v", err)
	}
}

func TestBridgeVLANFiltering(t *testing.T) {
	h := newHandle(t, newNetNS(t))

	on := true
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vstbr"}, VlanFiltering: &on}
	if err := h.LinkAdd(br); err != nil {
		missingFeature(t, "create a bridge with VLAN filtering", err)
	}
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vstp0"}, PeerName: "vstp1"}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	port, err := h.LinkByName("vstp0")
	if err != nil {
		t.Fatalf("read back veth: %v", err)
	}
	if err := h.LinkSetMaster(port, br); err != nil {
		t.Fatalf("enslave veth to bridge: %v", err)
	}
	if err := h.BridgeVlanAdd(port, 42, false, false, false, true); err != nil {
		missingFeature(t, "add VLAN 42 to a bridge port", err)
	}

	gotBr, err := h.LinkByName("vstbr")
	if err != nil {
		t.Fatalf("read back bridge: %v", err)
	}
	if b, ok := gotBr.(*netlink.Bridge); !ok || b.VlanFiltering == nil || !*b.VlanFiltering {
		t.Fatalf("bridge read back without vlan_filtering: %#v", gotBr)
	}
	vlans, err := h.BridgeVlanList()
	if err != nil {
		t.Fatalf("list bridge vlans: %v", err)
	}
	found := false
	for _, v := range vlans[int32(port.Attrs().Index)] {
		if v.Vid == 42 {
			found = true
		}
	}
	if !found {
		t.Fatalf("VLAN 42 not on bridge port vstp0: %v", vlans)
	}

	if err := h.LinkDel(port); err != nil {
		t.Fatalf("delete veth: %v", err)
	}
	if err := h.LinkDel(gotBr); err != nil {
		t.Fatalf("delete bridge: %v", err)
	}
}

// ifname pads an interface name the way nftables compares it (IFNAMSIZ bytes).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func TestNftablesTable(t *testing.T) {
	ns := newNetNS(t)
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatalf("nftables connection: %v", err)
	}

	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "voipgw_selftest"})
	input := c.AddChain(&nftables.Chain{
		Name:     "input",
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityFilter,
	})
	// iifname "vst0.42" udp dport 5060 counter accept
	c.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("vst0.42")},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(5060)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	// A NAT chain needs nft_chain_nat, nf_nat and conntrack: masquerade on the way out.
	post := c.AddChain(&nftables.Chain{
		Name:     "postrouting",
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	c.AddRule(&nftables.Rule{Table: table, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("vst1")},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		missingFeature(t, "create an nftables table with a filter and a NAT chain", err)
	}

	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	if len(tables) != 1 || tables[0].Name != "voipgw_selftest" {
		t.Fatalf("tables read back: %v, want only voipgw_selftest", tableNames(tables))
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list chains: %v", err)
	}
	kinds := map[string]nftables.ChainType{}
	for _, ch := range chains {
		kinds[ch.Name] = ch.Type
	}
	if kinds["input"] != nftables.ChainTypeFilter || kinds["postrouting"] != nftables.ChainTypeNAT || len(kinds) != 2 {
		t.Fatalf("chains read back: %v", kinds)
	}
	rules, err := c.GetRules(table, input)
	if err != nil {
		t.Fatalf("get rules: %v", err)
	}
	if len(rules) != 1 {
		t.Fatalf("input chain has %d rules, want 1", len(rules))
	}
	var sawIf, sawPort bool
	for _, e := range rules[0].Exprs {
		if cmp, ok := e.(*expr.Cmp); ok {
			sawIf = sawIf || bytes.Equal(cmp.Data, ifname("vst0.42"))
			sawPort = sawPort || bytes.Equal(cmp.Data, binaryutil.BigEndian.PutUint16(5060))
		}
	}
	if !sawIf || !sawPort {
		t.Fatalf("rule read back without iifname vst0.42 (%v) or dport 5060 (%v): %#v", sawIf, sawPort, rules[0].Exprs)
	}
	natRules, err := c.GetRules(table, post)
	if err != nil {
		t.Fatalf("get nat rules: %v", err)
	}
	if len(natRules) != 1 {
		t.Fatalf("postrouting chain has %d rules, want 1", len(natRules))
	}

	c.DelTable(table)
	if err := c.Flush(); err != nil {
		t.Fatalf("delete table: %v", err)
	}
	tables, err = c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list tables after delete: %v", err)
	}
	if len(tables) != 0 {
		t.Fatalf("tables left after delete: %v", tableNames(tables))
	}
}

func tableNames(ts []*nftables.Table) []string {
	var n []string
	for _, t := range ts {
		n = append(n, t.Name)
	}
	return n
}
