package firewall

// Statements of the full-cone NAT (nat.go), named after the nft syntax they make.

import (
	"encoding/binary"
	"fmt"
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

// refreshMappings refreshes a mapped endpoint's four set elements from a later
// packet of one of its flows, just before source NAT (the headers still carry the
// phone's own address and port). The external port comes from conntrack: for a
// flow the phone started it is the reply tuple's destination port, for a flow that
// came in through the dnat the original tuple's. `update` never changes an
// element's data, so this only restarts the timeouts; an element that expired
// while its flow lived is recreated with the port the flow really uses.
//
//	update @nat_out4 { ip saddr . udp sport : ct reply proto-dst } update @nat_in4 { ct reply proto-dst : ip saddr . udp sport } …
//
// needL4 adds the `meta l4proto udp` that `udp sport` implies (and nft hides), for
// rules without an earlier UDP match.
func refreshMappings(fromDNAT, needL4 bool) Stmt {
	ext := "ct reply proto-dst"
	if fromDNAT {
		ext = "ct original proto-dst"
	}
	extDir := !fromDNAT
	var exprs []expr.Any
	if needL4 {
		exprs = l4proto(unix.IPPROTO_UDP)
	}
	// Registers: phone ip . port in 0-1, the external port in 2.
	exprs = append(exprs, loadEndpoint()...)
	exprs = append(exprs, ctProtoDst(extDir, reg32(2)))
	exprs = append(exprs, recordMapping(reg32(2))...)
	return Stmt{Text: recordText(ext), Exprs: exprs}
}

// udpIPv4 is `meta nfproto ipv4 meta l4proto udp` for a rule in a chain that is
// jumped to and matches no IPv4 or UDP field before its statements (nft then
// lists the dependency as it is).
func udpIPv4() Stmt {
	return Stmt{Text: "meta nfproto ipv4 meta l4proto udp", Exprs: append(nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_UDP)...)}
}

// loadEndpoint loads the phone's `ip saddr . udp sport` into registers 0-1.
func loadEndpoint() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg32(0), Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: reg32(1), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
	}
}

// recordMapping updates the four sets from the endpoint in registers 0-1 and the
// external port in register p.
func recordMapping(p uint32) []expr.Any {
	return []expr.Any{
		&expr.Dynset{SrcRegKey: reg32(0), SrcRegData: p, SetName: SetNATOut4, Operation: unix.NFT_DYNSET_OP_UPDATE},
		&expr.Dynset{SrcRegKey: p, SrcRegData: reg32(0), SetName: SetNATIn4, Operation: unix.NFT_DYNSET_OP_UPDATE},
		&expr.Dynset{SrcRegKey: p, SetName: SetNATHeld4, Operation: unix.NFT_DYNSET_OP_UPDATE},
		&expr.Dynset{SrcRegKey: reg32(0), SetName: SetNATEps4, Operation: unix.NFT_DYNSET_OP_UPDATE},
	}
}

// recordText is recordMapping as nft lists it, with ext the external port's expression.
func recordText(ext string) string {
	const ep = "ip saddr . udp sport"
	return "update @" + SetNATOut4 + " { " + ep + " : " + ext + " } update @" + SetNATIn4 + " { " + ext + " : " + ep +
		" } update @" + SetNATHeld4 + " { " + ext + " } update @" + SetNATEps4 + " { " + ep + " }"
}

// claimLimit lets exactly one packet through per nat_claim4 element (its element
// lives claimTimeout, far less than an hour): the claim of a port.
func claimLimit() Stmt { return limitRate(false, 1, expr.LimitTimeHour, 1) }

// claimPort is `update @nat_claim4 { P limit rate 1/hour burst 1 packets }` for the
// port in register p: it passes for the first claimant of the port only.
func claimPort(p uint32, pText string) Stmt {
	l := claimLimit()
	return Stmt{Text: "update @" + SetNATClaim4 + " { " + pText + " " + l.Text + " }",
		Exprs: []expr.Any{&expr.Dynset{SrcRegKey: p, SetName: SetNATClaim4, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: l.Exprs}}}
}

// claimOwnPort gives a new endpoint its own port: claim it, then record it.
//
//	update @nat_claim4 { udp sport limit rate 1/hour burst 1 packets } update @nat_out4 { ip saddr . udp sport : udp sport } …
func claimOwnPort() Stmt {
	exprs := loadEndpoint()
	// The port again in register 2, so that the same register layout serves both claims.
	exprs = append(exprs, &expr.Payload{DestRegister: reg32(2), Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2})
	claim := claimPort(reg32(2), "udp sport")
	exprs = append(exprs, claim.Exprs...)
	exprs = append(exprs, recordMapping(reg32(2))...)
	return Stmt{Text: claim.Text + " " + recordText("udp sport"), Exprs: exprs}
}

// claimRemapPort draws a random port of the remap range [first, first+n) that no
// mapping holds, claims and records it, and counts the endpoint as remapped. The
// draw is made once, into register 2, and every statement reads it there: nft lists
// each use as the expression that loaded it, but its parser cannot express this
// rule (a number where a port is expected).
//
//	numgen random mod N offset F != @nat_held4 update @nat_claim4 { numgen random mod N offset F limit … } …
func claimRemapPort(first uint16, n uint32) Stmt {
	draw, text := drawPort(reg32(2), first, n)
	exprs := loadEndpoint()
	exprs = append(exprs, draw...)
	exprs = append(exprs, &expr.Lookup{SourceRegister: reg32(2), SetName: SetNATHeld4, Invert: true})
	claim := claimPort(reg32(2), text)
	exprs = append(exprs, claim.Exprs...)
	exprs = append(exprs, recordMapping(reg32(2))...)
	ctr := counterName(CounterNATRemapped)
	exprs = append(exprs, ctr.Exprs...)
	return Stmt{Text: text + " != @" + SetNATHeld4 + " " + claim.Text + " " + recordText(text) + " " + ctr.Text, Exprs: exprs, ListOnly: true}
}

// drawPort leaves a random port of [first, first+n) in register reg as a port
// field wants it: its first two bytes, in network byte order. numgen leaves a
// host-endian 32-bit number. On a little-endian CPU the number itself is the port
// and a 16-bit byte swap puts it in place (nft hides the byteorder expression when
// listing). On a big-endian CPU the first two bytes are the number's upper half,
// so the draw is made 65536 times larger: (first<<16) + random(n<<16), whose
// upper half is first + random(n) (the lower half is ignored by the 2-byte key).
func drawPort(reg uint32, first uint16, n uint32) ([]expr.Any, string) {
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 { // big-endian
		mod, off := n<<16, uint32(first)<<16
		return []expr.Any{&expr.Numgen{Register: reg, Modulus: mod, Type: unix.NFT_NG_RANDOM, Offset: off}},
			fmt.Sprintf("numgen random mod %d offset %d", mod, off)
	}
	return []expr.Any{
		&expr.Numgen{Register: reg, Modulus: n, Type: unix.NFT_NG_RANDOM, Offset: uint32(first)},
		&expr.Byteorder{SourceRegister: reg, DestRegister: reg, Op: expr.ByteorderHton, Len: 2, Size: 2},
	}, fmt.Sprintf("numgen random mod %d offset %d", n, first)
}

// endpointIn is `ip saddr . udp sport @set` (neq: `!= @set`).
func endpointIn(neq bool, set string, needL4 bool) Stmt {
	var exprs []expr.Any
	if needL4 {
		exprs = l4proto(unix.IPPROTO_UDP)
	}
	exprs = append(exprs, loadEndpoint()...)
	exprs = append(exprs, &expr.Lookup{SourceRegister: reg32(0), SetName: set, Invert: neq})
	op := ""
	if neq {
		op = "!= "
	}
	return Stmt{Text: "ip saddr . udp sport " + op + "@" + set, Exprs: exprs}
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

// udpSportIn is `udp sport @set`.
func udpSportIn(set string) Stmt { return udpSportLookup(false, set) }

// udpSportNotIn is `udp sport != @set`.
func udpSportNotIn(set string) Stmt { return udpSportLookup(true, set) }

func udpSportLookup(neq bool, set string) Stmt {
	exprs := l4proto(unix.IPPROTO_UDP)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: set, Invert: neq},
	)
	op := ""
	if neq {
		op = "!= "
	}
	return Stmt{Text: "udp sport " + op + "@" + set, Exprs: exprs}
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
	exprs, kw := loadFlow(v6)
	exprs = append(exprs, &expr.Dynset{SrcRegKey: reg32(0), SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE})
	return Stmt{Text: "update @" + set + " { " + flowText(kw) + " }", Exprs: exprs}
}

// tickFlow is `ip saddr . udp sport . ip daddr . udp dport != @tick4 add @tick4 { … }`:
// it matches when the flow has no element in the set (none yet, or its element
// timed out) and adds one. With the set's timeout T it so matches the first packet
// of a flow and then at most one packet per T, for the price of one hash lookup on
// the others (a `limit` in the element costs a clock read and a lock per packet).
func tickFlow(v6 bool, set string) Stmt {
	exprs, kw := loadFlow(v6)
	exprs = append(exprs,
		&expr.Lookup{SourceRegister: reg32(0), SetName: set, Invert: true},
		&expr.Dynset{SrcRegKey: reg32(0), SetName: set, Operation: unix.NFT_DYNSET_OP_ADD},
	)
	return Stmt{Text: flowText(kw) + " != @" + set + " add @" + set + " { " + flowText(kw) + " }", Exprs: exprs}
}

func flowText(kw string) string {
	return kw + " saddr . udp sport . " + kw + " daddr . udp dport"
}

// loadFlow loads `ip saddr . udp sport . ip daddr . udp dport` (or ip6) into the
// registers from 0 on, after the family's check.
func loadFlow(v6 bool) ([]expr.Any, string) {
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
	)
	return exprs, kw
}
