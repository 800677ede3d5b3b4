package firewall

// Statements of the full-cone NAT (nat.go), named after the nft syntax they make.

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// 4-byte registers by index (NFT_REG32_00 + i).
func reg32(i uint32) uint32 { return reg32_0 + i }

func dirText(reply bool) string {
	if reply {
		return "reply"
	}
	return "original"
}

// dirNum is the NFTA_CT_DIRECTION value for expr.Ct. The attribute is a u8, but
// google/nftables v0.3.0 writes Direction as a big-endian u32, and the kernel reads
// its first byte: IP_CT_DIR_REPLY (1) must be sent as 1<<24. (Without this, every
// `ct reply …` silently loads the original direction.)
func dirNum(reply bool) uint32 {
	if reply {
		return 1 << 24
	}
	return 0
}

// fibDaddrLocal is `fib daddr type local`: the packet is addressed to the router itself.
func fibDaddrLocal() Stmt {
	return Stmt{Text: "fib daddr type local", Exprs: []expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	}}
}

// ctDirection is `ct direction original` / `ct direction reply`.
func ctDirection(reply bool) Stmt {
	return Stmt{Text: "ct direction " + dirText(reply), Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(dirNum(reply) >> 24)}},
	}}
}

// ctStatus is `ct status snat` (one bit set).
func ctStatus(bit uint32, name string) Stmt {
	return Stmt{Text: "ct status " + name, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bit), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}}
}

// ctProtoDst loads conntrack's destination port of one direction.
func ctProtoDst(reply bool, reg uint32) expr.Any {
	return &expr.Ct{Key: expr.CtKeyPROTODST, Register: reg, Direction: dirNum(reply)}
}

// learnMappings updates both maps from a phone's packet on its way to WAN, just
// before source NAT (the headers still carry the phone's own address and port).
// The external port comes from conntrack: for a flow the phone started it is the
// reply tuple's destination port, for a flow that came in through the dnat the
// original tuple's.
//
// Learning before NAT rather than after it is forced by the tooling: after NAT the
// phone's address is only in conntrack, and google/nftables v0.3.0 cannot send the
// direction of `ct original ip saddr` (NFT_CT_SRC_IP; the kernel refuses it), while
// the generic `ct original saddr` loads 16 bytes in an inet table, which nft cannot
// list inside a concatenation (it aborts). A flow's first packet has no NAT yet at
// this point (`ct status snat` is false), so a mapping is learned from the second
// packet on.
//
//	update @nat_out4 { ip saddr . udp sport : ct reply proto-dst } update @nat_in4 { ct reply proto-dst : ip saddr . udp sport }
//
// needL4 adds the `meta l4proto udp` that `udp sport` implies (and nft hides), for
// rules without an earlier UDP match.
func learnMappings(fromDNAT, needL4 bool) Stmt {
	ext := "ct reply proto-dst"
	if fromDNAT {
		ext = "ct original proto-dst"
	}
	extDir := !fromDNAT
	var exprs []expr.Any
	if needL4 {
		exprs = l4proto(unix.IPPROTO_UDP)
	}
	exprs = append(exprs, []expr.Any{
		// nat_out4: key phone ip . port (regs 0-1), data external port (reg 2).
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: reg32(1), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		ctProtoDst(extDir, reg32(2)),
		&expr.Dynset{SrcRegKey: reg32(0), SrcRegData: reg32(2), SetName: SetNATOut4, Operation: unix.NFT_DYNSET_OP_UPDATE},
		// nat_in4: key external port (reg 0), data phone ip . port (regs 1-2).
		ctProtoDst(extDir, reg32(0)),
		&expr.Payload{DestRegister: reg32(1), Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: reg32(2), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Dynset{SrcRegKey: reg32(0), SrcRegData: reg32(1), SetName: SetNATIn4, Operation: unix.NFT_DYNSET_OP_UPDATE},
		// nat_held4: the same external port (still in reg 0) as a plain set.
		&expr.Dynset{SrcRegKey: reg32(0), SetName: SetNATHeld4, Operation: unix.NFT_DYNSET_OP_UPDATE},
	}...)
	return Stmt{
		Text:  "update @" + SetNATOut4 + " { ip saddr . udp sport : " + ext + " } update @" + SetNATIn4 + " { " + ext + " : ip saddr . udp sport } update @" + SetNATHeld4 + " { " + ext + " }",
		Exprs: exprs,
	}
}

// snatUDPSaddrSportMap is `snat ip to 198.51.100.2:ip saddr . udp sport map @nat_out4`:
// the WAN address with the endpoint's mapped port, or no match (the rule ends)
// when the endpoint has no mapping. The map holds ports only, so the address is
// the one the WAN had at apply time (a WAN address change re-applies).
func snatUDPSaddrSportMap(wan netip.Addr, set string) Stmt {
	exprs := l4proto(unix.IPPROTO_UDP)
	exprs = append(exprs,
		&expr.Immediate{Register: reg32(0), Data: wan.AsSlice()},
		&expr.Payload{DestRegister: reg32(1), Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: reg32(2), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Lookup{SourceRegister: reg32(1), DestRegister: reg32(1), IsDestRegSet: true, SetName: set},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4,
			RegAddrMin: reg32(0), RegAddrMax: reg32(0), RegProtoMin: reg32(1), RegProtoMax: reg32(1)},
	)
	return Stmt{Text: "meta l4proto udp snat ip to " + wan.String() + ":ip saddr . udp sport map @" + set, Exprs: exprs}
}

// dnatUDPDportMap is `dnat ip to udp dport map @nat_in4`.
// withNfproto adds the `meta nfproto ipv4` nft implies for `dnat ip` when no
// earlier IPv4 match in the rule did.
func dnatUDPDportMap(set string, withNfproto bool) Stmt {
	var exprs []expr.Any
	if withNfproto {
		exprs = nfproto(unix.NFPROTO_IPV4)
	}
	exprs = append(exprs, l4proto(unix.IPPROTO_UDP)...)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg32(0), DestRegister: reg32(0), IsDestRegSet: true, SetName: set},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4,
			RegAddrMin: reg32(0), RegAddrMax: reg32(0), RegProtoMin: reg32(1), RegProtoMax: reg32(1)},
	)
	text := "dnat ip to udp dport map @" + set
	if withNfproto {
		text = "meta nfproto ipv4 " + text // nft lists it when no IPv4 match came before
	}
	return Stmt{Text: text, Exprs: exprs}
}

// udpSportIn is `udp sport @set` (also on a map: a lookup of the key only).
func udpSportIn(set string) Stmt {
	exprs := l4proto(unix.IPPROTO_UDP)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: set},
	)
	return Stmt{Text: "udp sport @" + set, Exprs: exprs}
}

func masqueradeRandom() Stmt {
	return Stmt{Text: "masquerade random", Exprs: []expr.Any{&expr.Masq{Random: true}}}
}

// updatePinhole6 is `update @pinhole6 { ip6 saddr . udp sport }`.
func updatePinhole6(set string) Stmt {
	exprs := nfproto(unix.NFPROTO_IPV6)
	exprs = append(exprs, l4proto(unix.IPPROTO_UDP)...)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		&expr.Payload{DestRegister: reg32(4), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Dynset{SrcRegKey: reg32(0), SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE},
	)
	return Stmt{Text: "update @" + set + " { ip6 saddr . udp sport }", Exprs: exprs}
}

// daddrDportIn6 is `ip6 daddr . udp dport @pinhole6`.
func daddrDportIn6(set string) Stmt {
	exprs := nfproto(unix.NFPROTO_IPV6)
	exprs = append(exprs, l4proto(unix.IPPROTO_UDP)...)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Payload{DestRegister: reg32(4), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg32(0), SetName: set},
	)
	return Stmt{Text: "ip6 daddr . udp dport @" + set, Exprs: exprs}
}

// updateFlow is `update @media_out4 { ip saddr . udp sport . ip daddr . udp dport }`.
func updateFlow(v6 bool, set string) Stmt {
	fam, kw, alen, soff := byte(unix.NFPROTO_IPV4), "ip", uint32(4), uint32(12)
	if v6 {
		fam, kw, alen, soff = unix.NFPROTO_IPV6, "ip6", 16, 8
	}
	words := alen / 4
	exprs := nfproto(fam)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: soff, Len: alen},
		&expr.Payload{DestRegister: reg32(words), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: reg32(words + 1), Base: expr.PayloadBaseNetworkHeader, Offset: soff + alen, Len: alen},
		&expr.Payload{DestRegister: reg32(2*words + 1), Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Dynset{SrcRegKey: reg32(0), SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE},
	)
	return Stmt{Text: "update @" + set + " { " + kw + " saddr . udp sport . " + kw + " daddr . udp dport }", Exprs: exprs}
}
