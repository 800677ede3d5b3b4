package firewall

// Keeping the phones' UDP flows out of flowtables (OpenWrt's flow offloading).
//
// With `option flow_offloading '1'` fw4 puts `meta l4proto { tcp, udp } flow
// offload @ft` first in its forward chain. The kernel (nft_flow_offload_eval,
// net/netfilter/nft_flow_offload.c) offloads any confirmed UDP flow it sees there,
// a reply is not needed, and from then on forwards the flow's packets from the
// ingress hook of each flowtable device they arrive on (nf_flow_offload_ip_hook,
// nf_flow_table_ip.c), before prerouting, forward and postrouting. When the phones'
// device is one of them (fw4 takes the devices of its zones' networks; from 2022-05
// to 2024-03 their lower devices, so the trunk port under br-lan that carries the
// VoIP VLAN), voip_out never sees the flow again: its tick stops refreshing the
// mapping, which expires under a live call or registration (TestFullConeFlowOffloadInLab
// in cmd/voipgw, on Debian's 6.1 kernel).
//
// nft_flow_offload_eval leaves alone a flow whose conntrack entry has a helper
// extension (NF_CT_EXT_HELPER), as helpers must see every packet. The extension can
// exist without a helper: nft's `ct expectation` object adds it to a new
// (unconfirmed) flow before it checks its expectation quota (nft_ct_expect_obj_eval,
// nft_ct.c), and with a quota of 0 it stops there. So the object voip_no_offload
// (size 0) attached to a phone flow's first packet makes the flow non-offloadable
// and does nothing else: no helper is assigned (conntrack lists none), no
// expectation is ever created, no packet is read or rewritten. Its protocol, port
// and timeout are never used; the kernel (6.1) requires them and a layer 3 protocol
// other than inet, and does not look at that either before the quota check.
//
// What it costs: the extension on each new phone UDP flow, and those flows stay on
// the normal forwarding path (as they are without offloading); the router's other
// flows are still offloaded. nft (1.0.6) lists the object but will not read
// `size 0` back (it takes a 0 as a missing option), so Loadable prints it and the
// rules that use it as comments.

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ObjNoOffload is the ct expectation object that keeps a flow out of flowtables.
const ObjNoOffload = "voip_no_offload"

// Values the kernel requires of a ct expectation object, unused with size 0.
const (
	noOffloadDport   = 9    // discard
	noOffloadTimeout = 1000 // ms
)

// nativeU32 is v as google/nftables must be given it for a netlink attribute the
// kernel reads in host byte order (nla_get_u32): the library writes it big-endian.
func nativeU32(v uint32) uint32 {
	return binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, v))
}

// noOffloadObj is the object for google/nftables.
func noOffloadObj(t *nftables.Table) *nftables.NamedObj {
	return &nftables.NamedObj{Table: t, Name: ObjNoOffload, Type: nftables.ObjTypeCtExpect, Obj: &expr.CtExpect{
		L3Proto: unix.NFPROTO_IPV4, L4Proto: unix.IPPROTO_UDP, DPort: noOffloadDport, Timeout: nativeU32(noOffloadTimeout), Size: 0}}
}

// renderNoOffload prints the object as nft lists it; loadable comments it out.
func (t *Table) renderNoOffload(loadable bool) string {
	if !t.NoOffload {
		return ""
	}
	p := "\t"
	head := ""
	if loadable {
		p = "\t# "
		head = "\t# voipgw installs over netlink only (nft cannot parse size 0):\n"
	}
	return head + p + "ct expectation " + ObjNoOffload + " {\n" +
		p + "\tprotocol udp\n" + p + "\tdport 9\n" + p + "\ttimeout 1s\n" + p + "\tsize 0\n" + p + "\tl3proto ip\n" +
		p + "}\n\n"
}

// noOffload is `meta l4proto udp ct expectation set "voip_no_offload"`.
func noOffload() Stmt {
	return Stmt{Text: "meta l4proto udp ct expectation set " + quote(ObjNoOffload), ListOnly: true,
		Exprs: append(l4proto(unix.IPPROTO_UDP), &expr.Objref{Type: unix.NFT_OBJECT_CT_EXPECT, Name: ObjNoOffload})}
}

// addNoOffload keeps the phones' UDP flows out of flowtables: the ones they start
// (voip_out, first packet: after the established accept and the invalid drop) and
// the ones that come in to them through a mapping or a pinhole (voip_in, first
// packet, after the scan check). Only tables that keep state from the packet path
// need it (addNAT calls it when voip_refresh exists).
func addNoOffload(t *Table) {
	t.NoOffload = true
	insertAfter(t, "voip_out", "ct state invalid drop", []Rule{rule(noOffload())})
	insertAfter(t, "voip_in", "jump wan_scan", []Rule{rule(noOffload())})
}
