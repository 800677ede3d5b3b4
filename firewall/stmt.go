package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Stmt is one piece of a rule: its nft syntax and the netlink expressions that
// implement it. Rules are built from functions named after the nft syntax they
// produce, so a rule in Go reads like its line in `voipgw render`.
type Stmt struct {
	Text  string
	Exprs []expr.Any
	// ListOnly: nft lists the statement as Text but cannot parse Text back (it is
	// sent over netlink only; see Table.Loadable).
	ListOnly bool
}

// Registers as the kernel numbers them: NFT_REG_1 is the first 16-byte register,
// NFT_REG32_00.. address it (and the following ones) in 4-byte steps, which is
// what concatenations use.
const (
	reg1    = 1
	reg32_0 = 8
)

func ifnameBytes(name string) []byte {
	b := make([]byte, 16)
	copy(b, name+"\x00")
	return b
}

func quote(s string) string { return `"` + s + `"` }

func cmpOp(neq bool) (expr.CmpOp, string) {
	if neq {
		return expr.CmpOpNeq, "!= "
	}
	return expr.CmpOpEq, ""
}

// iifname matches the input interface: `iifname "voice"` / `iifname != "voice"`.
func iifname(name string, neq bool) Stmt {
	op, opText := cmpOp(neq)
	return Stmt{
		Text: "iifname " + opText + quote(name),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Cmp{Op: op, Register: reg1, Data: ifnameBytes(name)},
		},
	}
}

// oifname matches the output interface: `oifname "eth1"` / `oifname != "eth1"`.
func oifname(name string, neq bool) Stmt {
	op, opText := cmpOp(neq)
	return Stmt{
		Text: "oifname " + opText + quote(name),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Cmp{Op: op, Register: reg1, Data: ifnameBytes(name)},
		},
	}
}

var ctStateNames = []struct {
	bit  uint32
	name string
}{
	{expr.CtStateBitINVALID, "invalid"},
	{expr.CtStateBitESTABLISHED, "established"},
	{expr.CtStateBitRELATED, "related"},
	{expr.CtStateBitNEW, "new"},
	{expr.CtStateBitUNTRACKED, "untracked"},
}

// ctState matches when the conntrack state is one of bits: `ct state established,related`.
// With neq it matches when it is none of them: `ct state != new` (one bit only, as nft lists it).
func ctState(neq bool, bits ...uint32) Stmt {
	var mask uint32
	var names []string
	for _, s := range ctStateNames {
		for _, b := range bits {
			if b == s.bit {
				mask |= b
				names = append(names, s.name)
			}
		}
	}
	op := expr.CmpOpNeq
	text := "ct state " + strings.Join(names, ",")
	if neq {
		op = expr.CmpOpEq
		text = "ct state ! " + strings.Join(names, ",")
	}
	return Stmt{
		Text: text,
		Exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
			&expr.Cmp{Op: op, Register: reg1, Data: make([]byte, 4)},
		},
	}
}

// Family dependencies that nft adds implicitly in an inet table and hides when listing.
func nfproto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
	}
}

func l4proto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
	}
}

// metaL4proto matches the transport protocol explicitly: `meta l4proto udp`.
func metaL4proto(proto byte) Stmt {
	return Stmt{Text: "meta l4proto " + protoName(proto), Exprs: l4proto(proto)}
}

func protoName(p byte) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "ipv6-icmp"
	}
	return fmt.Sprint(p)
}

// dport matches a TCP or UDP destination port: `udp dport 67`.
func dport(proto byte, port uint16) Stmt {
	exprs := l4proto(proto)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, port)},
	)
	return Stmt{Text: fmt.Sprintf("%s dport %d", protoName(proto), port), Exprs: exprs}
}

// ICMP types matched by the router-services chain.
const (
	icmpEchoRequest   = 8
	icmp6EchoRequest  = 128
	icmp6RouterSol    = 133
	icmp6NeighborSol  = 135
	icmp6NeighborAdv  = 136
	icmp6MLDv2Report  = 143
	icmp6MLDListenRep = 131
)

var icmpTypeNames = map[[2]byte]string{
	{unix.IPPROTO_ICMP, icmpEchoRequest}:     "echo-request",
	{unix.IPPROTO_ICMPV6, icmp6EchoRequest}:  "echo-request",
	{unix.IPPROTO_ICMPV6, icmp6RouterSol}:    "nd-router-solicit",
	{unix.IPPROTO_ICMPV6, icmp6NeighborSol}:  "nd-neighbor-solicit",
	{unix.IPPROTO_ICMPV6, icmp6NeighborAdv}:  "nd-neighbor-advert",
	{unix.IPPROTO_ICMPV6, icmp6MLDListenRep}: "mld-listener-report",
	{unix.IPPROTO_ICMPV6, icmp6MLDv2Report}:  "mld2-listener-report",
}

// icmpType matches `icmp type echo-request` or `icmpv6 type nd-neighbor-solicit`.
func icmpType(proto, typ byte) Stmt {
	fam, kw := byte(unix.NFPROTO_IPV4), "icmp"
	if proto == unix.IPPROTO_ICMPV6 {
		fam, kw = unix.NFPROTO_IPV6, "icmpv6"
	}
	exprs := nfproto(fam)
	exprs = append(exprs, l4proto(proto)...)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{typ}},
	)
	return Stmt{Text: fmt.Sprintf("%s type %s", kw, icmpTypeNames[[2]byte{proto, typ}]), Exprs: exprs}
}

// addrField describes `ip saddr`, `ip daddr`, `ip6 saddr`, `ip6 daddr` for family-specific matches.
type addrField struct {
	v6  bool
	dst bool
}

func (f addrField) text() string {
	kw := "ip"
	if f.v6 {
		kw = "ip6"
	}
	if f.dst {
		return kw + " daddr"
	}
	return kw + " saddr"
}

func (f addrField) load(reg uint32) []expr.Any {
	fam, off, l := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if f.v6 {
		fam, off, l = unix.NFPROTO_IPV6, 8, 16
	}
	if f.dst {
		off += l
	}
	return append(nfproto(fam), &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l})
}

// addrInPrefix matches `ip saddr 192.0.2.0/25` (or `!= …` with neq).
func addrInPrefix(f addrField, p netip.Prefix, neq bool) Stmt {
	exprs := f.load(reg1)
	addr := p.Masked().Addr().AsSlice()
	if p.Bits() < p.Addr().BitLen() {
		mask := prefixMask(p.Bits(), len(addr))
		exprs = append(exprs, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(len(addr)),
			Mask: mask, Xor: make([]byte, len(addr))})
	}
	op, opText := cmpOp(neq)
	exprs = append(exprs, &expr.Cmp{Op: op, Register: reg1, Data: addr})
	text := p.Masked().String()
	if p.IsSingleIP() {
		text = p.Addr().String()
	}
	return Stmt{Text: f.text() + " " + opText + text, Exprs: exprs}
}

func prefixMask(bits, n int) []byte {
	m := make([]byte, n)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// masked64 loads an IPv6 source address reduced to its /64, the unit a v6 scanner controls.
func masked64Text() string { return "ip6 saddr & ffff:ffff:ffff:ffff::" }

func masked64Load() []expr.Any {
	exprs := addrField{v6: true}.load(reg1)
	return append(exprs, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16,
		Mask: prefixMask(64, 16), Xor: make([]byte, 16)})
}

// saddrIn matches the source address against a set: `ip saddr @platform4`.
func saddrIn(v6 bool, set string) Stmt {
	f := addrField{v6: v6}
	return Stmt{Text: f.text() + " @" + set, Exprs: append(f.load(reg1), &expr.Lookup{SourceRegister: reg1, SetName: set})}
}

// saddr64In matches an IPv6 source's /64 against a set: `ip6 saddr & ffff:ffff:ffff:ffff:: @scanners6`.
func saddr64In(set string) Stmt {
	return Stmt{Text: masked64Text() + " == @" + set, Exprs: append(masked64Load(), &expr.Lookup{SourceRegister: reg1, SetName: set})}
}

// daddrProtoPortIn matches `ip daddr . meta l4proto . th dport @allow4`: one set lookup
// whatever the size of the allowlist.
func daddrProtoPortIn(v6 bool, set string) Stmt {
	f := addrField{v6: v6, dst: true}
	next := uint32(reg32_0 + 1)
	if v6 {
		next = reg32_0 + 4
	}
	exprs := f.load(reg1)
	exprs = append(exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
		&expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: set},
	)
	return Stmt{Text: f.text() + " . meta l4proto . th dport @" + set, Exprs: exprs}
}

// counterName counts into a named counter object: `counter name "allowed"`.
func counterName(name string) Stmt {
	return Stmt{Text: "counter name " + quote(name), Exprs: []expr.Any{&expr.Objref{Type: 1 /* NFT_OBJECT_COUNTER */, Name: name}}}
}

// limitRate is `limit rate 10/second burst 5 packets` (over=false) or `limit rate over …`.
func limitRate(over bool, rate uint64, unit expr.LimitTime, burst uint32) Stmt {
	text := "limit rate "
	if over {
		text += "over "
	}
	text += fmt.Sprintf("%d/%s", rate, limitUnitName(unit))
	if burst > 0 {
		text += fmt.Sprintf(" burst %d packets", burst)
	}
	return Stmt{Text: text, Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: rate, Over: over, Unit: unit, Burst: burst}}}
}

func limitUnitName(u expr.LimitTime) string {
	switch u {
	case expr.LimitTimeSecond:
		return "second"
	case expr.LimitTimeMinute:
		return "minute"
	case expr.LimitTimeHour:
		return "hour"
	}
	return "day"
}

// updateSetWithLimit is the per-source rate meter of the scan detector:
// `update @scan_rate4 { ip saddr limit rate over 200/minute burst 10 packets }`.
// It matches when that source exceeds the rate.
func updateSetWithLimit(v6 bool, set string, limit Stmt) Stmt {
	var load []expr.Any
	keyText := "ip saddr"
	if v6 {
		load, keyText = masked64Load(), masked64Text()
	} else {
		load = addrField{}.load(reg1)
	}
	return Stmt{
		Text: fmt.Sprintf("update @%s { %s %s }", set, keyText, limit.Text),
		Exprs: append(load, &expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE,
			Exprs: limit.Exprs}),
	}
}

// addToSet is `add @scanners4 { ip saddr }` (IPv6: the source's /64).
func addToSet(v6 bool, set string, timeout time.Duration) Stmt {
	var load []expr.Any
	keyText := "ip saddr"
	if v6 {
		load, keyText = masked64Load(), masked64Text()
	} else {
		load = addrField{}.load(reg1)
	}
	_ = timeout // the set's own timeout applies; kept for symmetry with nft's "timeout" syntax
	return Stmt{
		Text:  fmt.Sprintf("add @%s { %s }", set, keyText),
		Exprs: append(load, &expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: unix.NFT_DYNSET_OP_ADD}),
	}
}

func accept() Stmt {
	return Stmt{Text: "accept", Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}
}

func drop() Stmt {
	return Stmt{Text: "drop", Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}}
}

func ret() Stmt {
	return Stmt{Text: "return", Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}}
}

func jump(chain string) Stmt {
	return Stmt{Text: "jump " + chain, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
}

func masquerade() Stmt {
	return Stmt{Text: "masquerade", Exprs: []expr.Any{&expr.Masq{}}}
}
