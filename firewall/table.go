// Package firewall turns voipgw's policy into one nftables table (family inet):
// built as pure data by Build, printed by Render in nft syntax, installed by Apply
// in a single netlink transaction and read back by ReadStatus.
package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Spec is everything the table depends on: config plus resolved addresses. It is
// plain data; Build is a pure function of it.
type Spec struct {
	Table      string       // nft table name (family inet)
	VoIPIf     string       // the VoIP network interface
	WAN        string       // WAN device
	LAN        []string     // data LAN devices, isolated from the VoIP network both ways
	Subnet4    netip.Prefix // the phones' IPv4 subnet (masqueraded on WAN)
	Subnet6    netip.Prefix // optional
	Allow      []Allow      // resolved allowlist
	Scan       ScanSpec
	ICMPRate   uint64 // echo requests per second accepted from the phones to the router
	ConfigHash string // recorded in the table and shown by status
	// DNS forwarder: learned sets and DNS interception (learned.go).
	DNS DNSSpec
	SIP SIPSpec // per-flow conntrack timeouts of SIP and media (sip.go)
	NAT NATSpec // full-cone NAT and media tracking for the keep-alive helper (nat.go)
}

// ScanSpec configures port-scan detection on WAN.
type ScanSpec struct {
	Enabled   bool
	Threshold uint32        // unsolicited new connection attempts ...
	Window    time.Duration // ... within this time make a scanner
	Timeout   time.Duration // how long a scanner stays in the set
}

// Names of the named counters: the rule groups `voipgw status` reports.
const (
	CounterAllowed        = "allowed"
	CounterNotAllowlisted = "blocked_not_allowlisted"
	CounterLAN            = "blocked_lan"
	CounterInbound        = "blocked_inbound"
	CounterRouter         = "blocked_router"
	CounterScanners       = "scanners"
	CounterScanDetected   = "scanners_detected"
)

// Counters lists the counter objects in the order status prints them.
var Counters = []string{CounterAllowed, CounterNotAllowlisted, CounterLAN, CounterInbound, CounterRouter, CounterScanDetected, CounterScanners}

// Set names used by the table; other issues' daemons address sets by these names.
const (
	SetLANIfs      = "lan_ifs"
	SetAllow4      = "allow4"
	SetAllow4Range = "allow4_ranges"
	SetAllow6      = "allow6"
	SetAllow6Range = "allow6_ranges"
	SetPlatform4   = "platform4"
	SetPlatform6   = "platform6"
	SetScanners4   = "scanners4"
	SetScanners6   = "scanners6"
	SetScanRate4   = "scan_rate4"
	SetScanRate6   = "scan_rate6"
)

// Table is the desired nftables table as data.
type Table struct {
	Name       string
	Counters   []string
	CtTimeouts []*CtTimeout // sip.go
	NoOffload  bool         // the voip_no_offload ct expectation object (offload.go)
	Sets       []*Set
	Chains     []*Chain
}

// Field is one component of a set key, with its nft datatype.
type Field = nftables.SetDatatype

// Set is a named set with its elements.
type Set struct {
	Name     string
	Fields   []Field
	Data     []Field // a map's data type (`type K : D`); nil for a plain set (nat.go)
	Interval bool
	Dynamic  bool          // filled from the packet path (flags dynamic)
	Timeout  time.Duration // default element timeout (flags timeout)
	Size     uint32
	Keep     bool // elements survive a re-apply (learned state such as scanners)
	Comment  string
	Elems    []Elem

	// Packed holds more elements of a plain set (no interval, no map): their keys
	// back to back, each keySize bytes, printed from the key (keyText). A large
	// allowlist's exact entries go here: 100 000 Elems with their text are ~15 MB
	// in apply's memory, their packed keys 1.2 MB.
	Packed []byte

	// Carry, if set, picks the elements a re-apply keeps (Keep sets); nil keeps all.
	Carry func(old []nftables.SetElement) []nftables.SetElement
}

// Elem is one set element: its text as nft lists it and its key bytes.
type Elem struct {
	Text   string
	Key    []byte
	KeyEnd []byte // for interval sets: inclusive end (concatenations) or nil
	Val    []byte // for maps: the data (Text then reads "key : data")
}

// Elements is every element, packed ones included (with their text).
func (s *Set) Elements() []Elem {
	out := slices.Clone(s.Elems)
	n := s.keySize()
	for i := 0; n > 0 && i+n <= len(s.Packed); i += n {
		k := s.Packed[i : i+n : i+n]
		out = append(out, Elem{Text: keyText(s.Fields, k), Key: k})
	}
	return out
}

// keySize is the length of the set's key: a concatenation pads every field to 4 bytes.
func (s *Set) keySize() int {
	if len(s.Fields) == 1 {
		return int(s.Fields[0].Bytes)
	}
	n := 0
	for _, f := range s.Fields {
		n += int(f.Bytes+3) / 4 * 4
	}
	return n
}

// keyText prints a key as nft lists it, field by field.
func keyText(fields []Field, key []byte) string {
	var b strings.Builder
	for i, f := range fields {
		n := int(f.Bytes)
		if len(fields) > 1 {
			n = (n + 3) / 4 * 4
		}
		if n > len(key) {
			break
		}
		v := key[:f.Bytes]
		key = key[n:]
		if i > 0 {
			b.WriteString(" . ")
		}
		switch f.Name {
		case nftables.TypeIPAddr.Name, nftables.TypeIP6Addr.Name:
			a, _ := netip.AddrFromSlice(v)
			b.WriteString(a.String())
		case nftables.TypeInetProto.Name:
			b.WriteString(protoName(v[0]))
		case nftables.TypeInetService.Name:
			b.WriteString(strconv.Itoa(int(v[0])<<8 | int(v[1])))
		case nftables.TypeIFName.Name:
			b.WriteString(quote(strings.TrimRight(string(v), "\x00")))
		default:
			fmt.Fprintf(&b, "0x%x", v)
		}
	}
	return b.String()
}

// Chain is a chain; a base chain has a Hook.
type Chain struct {
	Name     string
	Hook     *Hook
	Rules    []Rule
	Comment  string
	ruleText []string
}

// Hook makes a base chain.
type Hook struct {
	Type     nftables.ChainType
	Hooknum  *nftables.ChainHook
	HookName string
	Priority int32
	PrioText string
}

// Rule is a sequence of statements and an optional comment.
type Rule struct {
	Stmts   []Stmt
	Comment string
}

func rule(stmts ...Stmt) Rule { return Rule{Stmts: stmts} }

// Text is the rule as nft prints it.
func (r Rule) Text() string {
	s := ""
	for _, st := range r.Stmts {
		if s != "" {
			s += " "
		}
		s += st.Text
	}
	if r.Comment != "" {
		s += " comment " + quote(r.Comment)
	}
	return s
}

// ListOnly says that nft lists the rule but cannot parse it back.
func (r Rule) ListOnly() bool {
	for _, st := range r.Stmts {
		if st.ListOnly {
			return true
		}
	}
	return false
}

// Exprs is the rule's netlink expressions.
func (r Rule) Exprs() []expr.Any {
	var out []expr.Any
	for _, st := range r.Stmts {
		out = append(out, st.Exprs...)
	}
	return out
}

// Build makes the desired table from a spec. It is pure: no kernel access.
func Build(s Spec) (*Table, error) {
	if s.Table == "" || s.VoIPIf == "" || s.WAN == "" || !s.Subnet4.IsValid() {
		return nil, fmt.Errorf("firewall spec incomplete: table, VoIP interface, WAN and IPv4 subnet are required")
	}
	t := &Table{Name: s.Table, Counters: Counters}

	is4 := func(a Allow) bool { return a.Prefix.Addr().Is4() }
	exact4, ranges4 := splitBoxes(normalizeIf(s.Allow, is4))
	exact6, ranges6 := splitBoxes(normalizeIf(s.Allow, func(a Allow) bool { return !is4(a) }))
	plat4, plat6 := platformRanges(s.Allow)

	t.Sets = append(t.Sets,
		&Set{Name: SetLANIfs, Fields: []Field{nftables.TypeIFName}, Comment: "data LAN devices (for the admin: the rules let the phones reach WAN only)", Elems: ifnameElems(s.LAN)},
		&Set{Name: SetAllow4, Fields: allowFields(false), Comment: "allowlist: single address and port", Packed: packedBoxes(exact4)},
		&Set{Name: SetAllow4Range, Fields: allowFields(false), Interval: true, Comment: "allowlist: subnets and port ranges", Elems: boxElems(ranges4, true)},
		&Set{Name: SetAllow6, Fields: allowFields(true), Comment: "allowlist: single address and port", Packed: packedBoxes(exact6)},
		&Set{Name: SetAllow6Range, Fields: allowFields(true), Interval: true, Comment: "allowlist: subnets and port ranges", Elems: boxElems(ranges6, true)},
		&Set{Name: SetPlatform4, Fields: []Field{nftables.TypeIPAddr}, Interval: true, Comment: "allowlisted destinations, never treated as scanners", Elems: rangeElems(plat4)},
		&Set{Name: SetPlatform6, Fields: []Field{nftables.TypeIP6Addr}, Interval: true, Comment: "allowlisted destinations, never treated as scanners", Elems: rangeElems(plat6)},
	)
	if s.Scan.Enabled {
		t.Sets = append(t.Sets,
			&Set{Name: SetScanners4, Fields: []Field{nftables.TypeIPAddr}, Dynamic: true, Timeout: s.Scan.Timeout, Size: DynsetDefaultSize, Keep: true, Comment: "port scanners, dropped silently"},
			&Set{Name: SetScanners6, Fields: []Field{nftables.TypeIP6Addr}, Dynamic: true, Timeout: s.Scan.Timeout, Size: DynsetDefaultSize, Keep: true, Comment: "port scanners (/64), dropped silently"},
			&Set{Name: SetScanRate4, Fields: []Field{nftables.TypeIPAddr}, Dynamic: true, Timeout: s.Scan.Window, Size: DynsetDefaultSize, Comment: "per-source rate of unsolicited new connections"},
			&Set{Name: SetScanRate6, Fields: []Field{nftables.TypeIP6Addr}, Dynamic: true, Timeout: s.Scan.Window, Size: DynsetDefaultSize, Comment: "per-/64 rate of unsolicited new connections"},
		)
	}

	established := ctState(false, expr.CtStateBitESTABLISHED, expr.CtStateBitRELATED)
	invalid := ctState(false, expr.CtStateBitINVALID)

	// Scan detection: wan_scan is jumped to from input (the router itself) and
	// forward (the phones, and the LAN through the router's port forwards) for
	// packets from WAN. A prerouting hook of its own would cost every packet the
	// router receives, the phones' own included, a hook traversal (BENCHMARKS.md).
	var scanJump []Rule
	if s.Scan.Enabled {
		scanJump = []Rule{rule(iifname(s.WAN, false), jump("wan_scan"))}
		rate, unit := scanRate(s.Scan.Threshold, s.Scan.Window)
		t.Chains = append(t.Chains, &Chain{Name: "wan_scan", Comment: "port-scan detection on WAN", Rules: []Rule{
			rule(saddrIn(false, SetScanners4), counterName(CounterScanners), drop()),
			rule(saddr64In(SetScanners6), counterName(CounterScanners), drop()),
			rule(ctState(true, expr.CtStateBitNEW), ret()),
			rule(saddrIn(false, SetPlatform4), ret()),
			rule(saddrIn(true, SetPlatform6), ret()),
			rule(updateSetWithLimit(false, SetScanRate4, limitRate(true, rate, unit, s.Scan.Threshold)),
				addToSet(false, SetScanners4, s.Scan.Timeout), counterName(CounterScanDetected), drop()),
			rule(updateSetWithLimit(true, SetScanRate6, limitRate(true, rate, unit, s.Scan.Threshold)),
				addToSet(true, SetScanners6, s.Scan.Timeout), counterName(CounterScanDetected), drop()),
		}})
	}

	// input: what phones may ask of the router itself.
	icmpRate := s.ICMPRate
	if icmpRate == 0 {
		icmpRate = 10
	}
	t.Chains = append(t.Chains,
		&Chain{Name: "input", Hook: filterHook(nftables.ChainHookInput, "input", 0, "filter"), Rules: append(slices.Clone(scanJump),
			rule(iifname(s.VoIPIf, false), jump("voip_to_router")),
		)},
		&Chain{Name: "voip_to_router", Comment: "phones to the router: DHCP, DNS, NTP, ping", Rules: []Rule{
			rule(established, accept()),
			rule(dport(unix.IPPROTO_UDP, 67), accept()),
			rule(dport(unix.IPPROTO_UDP, 547), accept()),
			rule(dport(unix.IPPROTO_UDP, 53), accept()),
			rule(dport(unix.IPPROTO_TCP, 53), accept()),
			rule(dport(unix.IPPROTO_UDP, 123), accept()),
			rule(icmpType(unix.IPPROTO_ICMP, icmpEchoRequest), limitRate(false, icmpRate, expr.LimitTimeSecond, 0), accept()),
			rule(icmpType(unix.IPPROTO_ICMPV6, icmp6EchoRequest), limitRate(false, icmpRate, expr.LimitTimeSecond, 0), accept()),
			rule(icmpType(unix.IPPROTO_ICMPV6, icmp6RouterSol), accept()),
			rule(icmpType(unix.IPPROTO_ICMPV6, icmp6NeighborSol), accept()),
			rule(icmpType(unix.IPPROTO_ICMPV6, icmp6NeighborAdv), accept()),
			rule(icmpType(unix.IPPROTO_ICMPV6, icmp6MLDv2Report), accept()),
			rule(counterName(CounterRouter), drop()),
		}},
	)

	// forward: the policy between the phones, the LAN and the internet.
	fwdFirst := rule(iifname(s.VoIPIf, false), jump("voip_out"))
	fwdFirst.Comment = ConfigComment(s.ConfigHash)
	t.Chains = append(t.Chains,
		// Packets to the phones go to voip_in before scan detection: replies of the
		// phones' own flows (most of their traffic) are accepted there first, and
		// voip_in sends only new inbound flows through wan_scan.
		&Chain{Name: "forward", Hook: filterHook(nftables.ChainHookForward, "forward", 0, "filter"), Rules: slices.Concat(
			[]Rule{fwdFirst, rule(oifname(s.VoIPIf, false), jump("voip_in"))}, scanJump,
		)},
		// voip_out is on the path of every packet the phones send: what a flow's
		// later packets evaluate is kept to a few rules (BENCHMARKS.md §1). The LAN
		// devices need no rule of their own: only WAN passes. A conntrack entry is
		// confirmed only when its first packet was accepted, by these rules, so a
		// confirmed flow's later packets get the same verdict without the allowlist
		// lookups: one-way flows (RTP before the far end answers) stay `ct state new`
		// for good, and established flows are confirmed anyway.
		&Chain{Name: "voip_out", Comment: "phones to anywhere: only the allowlist, only via WAN", Rules: []Rule{
			rule(oifname(s.WAN, true), counterName(CounterLAN), drop()),
			rule(ctStatus(ctStatusConfirmed, "confirmed"), accept()),
			rule(ctState(false, expr.CtStateBitRELATED), accept()),
			rule(invalid, drop()),
			rule(daddrProtoPortIn(false, SetAllow4), counterName(CounterAllowed), accept()),
			rule(daddrProtoPortIn(false, SetAllow4Range), counterName(CounterAllowed), accept()),
			rule(daddrProtoPortIn(true, SetAllow6), counterName(CounterAllowed), accept()),
			rule(daddrProtoPortIn(true, SetAllow6Range), counterName(CounterAllowed), accept()),
			rule(counterName(CounterNotAllowlisted), drop()),
		}},
		&Chain{Name: "voip_in", Comment: "anything to the phones: replies from WAN only", Rules: slices.Concat([]Rule{
			rule(iifname(s.WAN, true), counterName(CounterLAN), drop()),
			rule(established, accept()),
		}, voipInScan(s), []Rule{
			rule(counterName(CounterInbound), drop()),
		}),
		},
		&Chain{Name: "postrouting", Hook: &Hook{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting,
			HookName: "postrouting", Priority: 100, PrioText: "srcnat"}, Rules: []Rule{
			rule(oifname(s.WAN, false), addrInPrefix(addrField{}, s.Subnet4, false), masquerade()),
		}},
	)
	addLearned(t, s) // learned.go
	addSIP(t, s)     // sip.go
	addNAT(t, s)     // nat.go
	runBeforeFW4(t)  // fw4.go
	unboundSizes(t)
	return t, nil
}

// unboundSizes drops the default size of dynamic sets that no rule fills: such a
// set is sent without a size (see Set.nft) and only a rule's dynset gives it the
// kernel's default cap, so without one the kernel lists no size (and the table
// would not list back as rendered).
func unboundSizes(t *Table) {
	bound := map[string]bool{}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			for _, st := range r.Stmts {
				for _, e := range st.Exprs {
					if d, ok := e.(*expr.Dynset); ok {
						bound[d.SetName] = true
					}
				}
			}
		}
	}
	for _, s := range t.Sets {
		if s.Dynamic && s.Size == DynsetDefaultSize && !bound[s.Name] {
			s.Size = 0
		}
	}
}

// voipInScan sends new inbound flows to the phones (only WAN gets this far in
// voip_in) through scan detection.
func voipInScan(s Spec) []Rule {
	if !s.Scan.Enabled {
		return nil
	}
	return []Rule{rule(jump("wan_scan"))}
}

// ConfigComment is the comment that carries the applied config's hash in the table,
// so `voipgw status` can read it back from the kernel.
func ConfigComment(hash string) string { return "voipgw config " + hash }

func filterHook(h *nftables.ChainHook, name string, prio int32, prioText string) *Hook {
	return &Hook{Type: nftables.ChainTypeFilter, Hooknum: h, HookName: name, Priority: prio, PrioText: prioText}
}

// scanRate converts "more than N in T" into nft's integer rate per unit; the burst is N,
// so the (N+1)th attempt in a burst trips the detector.
func scanRate(n uint32, window time.Duration) (uint64, expr.LimitTime) {
	secs := uint64(window / time.Second)
	if secs == 0 {
		secs = 1
	}
	if uint64(n)%secs == 0 {
		return uint64(n) / secs, expr.LimitTimeSecond
	}
	perMin := (uint64(n)*60 + secs - 1) / secs
	return perMin, expr.LimitTimeMinute
}

func allowFields(v6 bool) []Field {
	addr := nftables.TypeIPAddr
	if v6 {
		addr = nftables.TypeIP6Addr
	}
	return []Field{addr, nftables.TypeInetProto, nftables.TypeInetService}
}

// splitBoxes separates exact boxes from ranges, keeping the order; the exact ones
// stay in bs's array (there can be 100 000 of them), the ranges are copied.
func splitBoxes(bs []Box) (exact, ranges []Box) {
	exact = bs[:0]
	for _, b := range bs {
		if b.exact() {
			exact = append(exact, b)
		} else {
			ranges = append(ranges, b)
		}
	}
	return exact, ranges
}

// platformRanges are the allowlisted destinations that are specific (not "any"):
// inbound new connections from them are never counted as scans.
func platformRanges(allows []Allow) (v4, v6 []AddrRange) {
	seen := map[netip.Prefix]bool{} // an address has an entry per port: 100 000 entries can be 200 prefixes
	for _, a := range allows {
		if a.Prefix.Bits() < 8 {
			continue // DNS/NTP to anywhere must not exempt the whole internet
		}
		if seen[a.Prefix] {
			continue
		}
		seen[a.Prefix] = true
		if a.Prefix.Addr().Is4() {
			v4 = append(v4, prefixRange(a.Prefix))
		} else {
			v6 = append(v6, prefixRange(a.Prefix))
		}
	}
	if len(v4) > 0 {
		v4 = unionRanges(v4)
	}
	if len(v6) > 0 {
		v6 = unionRanges(v6)
	}
	return v4, v6
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func boxKey(addr netip.Addr, proto uint8, port uint16) []byte {
	k := pad4(addr.AsSlice())
	k = append(k, pad4([]byte{proto})...)
	return append(k, pad4([]byte{byte(port >> 8), byte(port)})...)
}

func boxElems(bs []Box, interval bool) []Elem {
	out := make([]Elem, 0, len(bs))
	for _, b := range bs {
		port := strconv.Itoa(int(b.Ports[0]))
		if b.Ports[0] != b.Ports[1] {
			port += "-" + strconv.Itoa(int(b.Ports[1]))
		}
		e := Elem{
			Text: b.Addr.text() + " . " + b.Proto.String() + " . " + port,
			Key:  boxKey(b.Addr.From, uint8(b.Proto), b.Ports[0]),
		}
		if interval {
			e.KeyEnd = boxKey(b.Addr.To, uint8(b.Proto), b.Ports[1])
		}
		out = append(out, e)
	}
	return out
}

// packedBoxes is the Packed keys of exact boxes.
func packedBoxes(bs []Box) []byte {
	if len(bs) == 0 {
		return nil
	}
	out := make([]byte, 0, len(bs)*len(boxKey(bs[0].Addr.From, 0, 0)))
	for _, b := range bs {
		out = append(out, boxKey(b.Addr.From, uint8(b.Proto), b.Ports[0])...)
	}
	return out
}

func rangeElems(rs []AddrRange) []Elem {
	out := make([]Elem, 0, len(rs))
	for _, r := range rs {
		out = append(out, Elem{Text: r.text(), Key: r.From.AsSlice(), KeyEnd: r.To.AsSlice()})
	}
	return out
}

func ifnameElems(names []string) []Elem {
	out := make([]Elem, 0, len(names))
	for _, n := range names {
		out = append(out, Elem{Text: quote(n), Key: ifnameBytes(n)})
	}
	return out
}
