package firewall

// Endpoint-independent ("full cone") NAT for the phones' UDP flows, in the kernel,
// with nothing but nftables (no out-of-tree module, no daemon).
//
// Every phone endpoint (ip . port, within nat.port) gets ONE external port, chosen
// and recorded before source NAT on the endpoint's first packet, and every flow of
// the endpoint is then source-NATed to exactly that port from its map:
//
//   - nat_out4 (map, phone ip . port → external port): the srcnat chain's
//     `snat ip to WAN:ip saddr . udp sport map @nat_out4` gives every new flow of
//     the endpoint its port, towards every destination (EIM), also after its
//     conntrack entries are gone.
//   - nat_in4 (map, external port → phone ip . port): a dstnat chain on WAN sends
//     new inbound UDP to the router's address on a mapped port to the phone behind
//     it (`dnat ip to udp dport map @nat_in4`): endpoint-independent filtering, or,
//     with filtering provider, only for senders in the allowlisted platform set.
//   - nat_held4 and nat_eps4: the keys of nat_in4 and nat_out4 as plain sets; a
//     map cannot be matched by key alone on the 6.1 kernels (a lookup without a
//     destination register is EINVAL there).
//
// The choice (rules in voip_out, the forward filter before srcnat, and chain
// nat_claim, on a new flow of an endpoint that has no mapping yet):
//
//  1. its own port, unless a mapping holds it (port preservation);
//  2. else a random port of nat.remap_port that no mapping holds, up to
//     remapTries draws (`numgen random mod N offset F`, see drawPort);
//  3. else the packet is dropped and counted (nat_exhausted): no port is ever
//     shared. The phone's retransmission draws again.
//
// The choice is recorded in all four sets by the same rule, before the packet
// reaches srcnat, so the mapping exists from the first packet. Two phones racing
// for the same port on two CPUs are serialised by nat_claim4: claiming a port is
// an `update` of its element with `limit rate 1/hour burst 1 packets`, which
// passes exactly once per element (the limit's token is taken under its lock; the
// element expires after claimTimeout, long after the claim's rule has recorded
// the mapping in nat_held4). The loser's rule ends there and it draws another
// port. The same endpoint racing with itself (two first packets at once) cannot
// split: `update` never overwrites, so both flows are NATed from the one nat_out4
// element that won; the other draw stays held by the same endpoint until it
// expires.
//
// A random draw needs one number in five statements, so the remap rule loads it
// into a register once and every statement reads it; nft lists that rule, but its
// parser cannot read it back (a number where a port is expected, and one draw for
// five uses): Render prints the listing, and `nft -f` of a render loads everything
// but that rule (see Table.Loadable). Refresh: a mapped endpoint's flows, on a tick
// of at most one packet a second per flow (voip_refresh, see addRefresh), refresh all four sets (their timeout is nat.timeout, refreshed together), from
// the packet and conntrack's reply tuple; flows that began inbound (through the
// dnat) refresh them from their reply direction, or an active inbound-started flow
// would lose its mapping (fullcone-findings trap 3). The map timeout outlives
// conntrack's UDP timeouts (trap 4).
//
// What the kernel still decides: an exact-port snat whose 5-tuple another flow of
// the router already uses towards the same destination (a LAN host's masqueraded
// flow on that port to the same server, say) clashes in conntrack and the packet is
// dropped (insert_failed) until that flow ends; the maps keep the mapping. Ports
// outside nat.port keep plain masquerade (`masquerade random` when their own port
// is held by a mapping).
//
// The WAN address (trap 5) is not in the maps (they hold ports); it is in the
// snat rule, taken at apply. So the maps are carried over a re-apply (elements of
// phones outside the configured subnet or ports are dropped) and a mapping survives
// a SIGHUP or a WAN address change; a WAN address change needs a re-apply for the
// rule (voipgw run watches the WAN; OpenWrt's hotplug reload does it without the
// daemon). Without a WAN address at apply (PPPoE not up yet) no mapping is made:
// plain masquerade until the next apply.
//
// IPv6 has no NAT: pinhole6 (phone ip6 . port) is learned the same way from the
// phones' outbound packets and opens the same endpoint to inbound UDP in voip_in,
// under the same filtering.
//
// The keep-alive helper (`voipgw run`, package media) needs to know when a phone
// stopped sending on a media flow: media_out4/6 hold each media flow's 4-tuple with
// a timeout of the keep-alive interval, refreshed by the phone's packets on the
// refresh tick (at most a quarter interval apart while it sends; forward path only, so the helper's own keep-alives, which leave from the router,
// do not count). A flow missing from the set has been silent for an interval.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/config"
)

// Names of the NAT and keep-alive objects in voipgw's table.
const (
	SetNATOut4     = "nat_out4"
	SetNATIn4      = "nat_in4"
	SetNATHeld4    = "nat_held4"
	SetNATEps4     = "nat_eps4"
	SetNATClaim4   = "nat_claim4"
	SetNATPorts    = "nat_ports"
	SetPinhole6    = "pinhole6"
	SetMediaOut4   = "media_out4"
	SetMediaOut6   = "media_out6"
	SetMediaPorts  = "media_ports"
	ChainNATDstnat = "nat_dstnat"
	ChainNATOutput = "nat_output"
	ChainNATClaim  = "nat_claim"
	ChainMedia     = "media_track"
	ChainRefresh   = "voip_refresh"
	SetTick4       = "tick4"
	SetTick6       = "tick6"

	CounterNATInbound   = "nat_inbound"   // new inbound flows let in through a mapping or pinhole
	CounterNATRemapped  = "nat_remapped"  // endpoints given a remapped port: theirs was another endpoint's mapping
	CounterNATExhausted = "nat_exhausted" // first packets dropped: no free port found in remapTries draws
)

// remapTries is how many random ports a new endpoint draws before its packet is
// dropped: with h of N remap ports held, all draws fail with chance (h/N)^4.
const remapTries = 4

// claimTimeout is how long a claimed port's lock element lives: far longer than
// the claiming rule takes, and short enough that an expired mapping's port is free
// again at once for practical purposes.
const claimTimeout = time.Second

// NATSpec is the full-cone and keep-alive part of the spec.
type NATSpec struct {
	Enabled bool
	Ports   []config.PortSpan // the phones' source ports that get mappings; empty: all UDP
	EIF     bool              // endpoint-independent filtering; false: only the platform set may send in
	Timeout time.Duration     // mapping timeout
	Remap   config.PortSpan   // external ports of remapped endpoints
	WANAddr netip.Addr        // the WAN's IPv4 address at apply (read from the kernel by the caller)

	// Keepalive > 0 tracks media flows (destination ports MediaPorts) in
	// media_out4/6 with this timeout, for the keep-alive helper.
	Keepalive  time.Duration
	MediaPorts []config.PortSpan
	MediaMax   uint32 // size of the media sets
}

func natSpecFromConfig(c *config.Config) NATSpec {
	n := NATSpec{Enabled: c.NAT.Enabled, Ports: c.NAT.Ports, EIF: c.NAT.Filtering == config.FilteringEndpointIndependent, Timeout: c.NAT.Timeout, Remap: c.NAT.Remap}
	if c.Keepalive.Enabled && len(c.Keepalive.Ports) > 0 {
		n.Keepalive, n.MediaPorts = c.Keepalive.Interval, c.Keepalive.Ports
		n.MediaMax = uint32(max(c.Keepalive.MaxFlows*2, 1024))
	}
	return n
}

// natMapSize bounds each map: one element per phone endpoint with a live mapping.
const natMapSize = DynsetDefaultSize

// DynsetDefaultSize is the cap the kernel gives a set the packet path fills when
// the set was created without a size (nft_dynset). Sets of this size are sent
// without it (see Set.nft): no hash table allocated up front for the cap.
const DynsetDefaultSize = 65535

// addNAT adds full cone and media tracking to the table Build made. Without
// Enabled and Keepalive (a spec built by hand) it adds nothing.
func addNAT(t *Table, s Spec) {
	n := s.NAT
	var refresh []Rule
	if n.Keepalive > 0 && len(n.MediaPorts) > 0 {
		refresh = append(refresh, addMediaTracking(t, s)...)
	}
	if n.Enabled && n.Timeout > 0 {
		refresh = append(refresh, addFullCone(t, s)...)
	}
	addRefresh(t, s, refresh)
	if len(refresh) > 0 {
		addNoOffload(t) // offload.go: what voip_refresh keeps must see the flows' packets
	}
}

// addRefresh puts the per-packet bookkeeping (media tracking, mapping refresh,
// IPv6 pinholes: rs) in chain voip_refresh and jumps to it from the top of
// voip_out at most a few times a second per flow. Refreshing on every packet
// cost a forwarded packet four to six set updates (BENCHMARKS.md §1); what the
// refresh keeps alive lives for seconds to minutes (mapping timeout ≥ 5 s,
// keep-alive interval ≥ 1 s), so a tick of a quarter of the shortest of them (at
// most 1 s) is as good. The tick is tick4/6, a set of flows whose elements live
// one tick: `flow != @tick4 add @tick4 { flow } jump voip_refresh` passes a flow's
// first packet and then one packet per tick; a flow that sends less often (SIP
// keep-alives every 30 s) refreshes on every packet. The other packets pay one
// hash lookup.
//
// The refresh sits before the `ct status confirmed` accept, so flows that never
// become established (one-way media, a phone's first REGISTERs) refresh too.
func addRefresh(t *Table, s Spec, rs []Rule) {
	if len(rs) == 0 {
		return
	}
	tick := time.Second
	for _, d := range []time.Duration{s.NAT.Timeout, s.NAT.Keepalive} {
		if d > 0 && d/4 < tick {
			tick = max(d/4, 10*time.Millisecond)
		}
	}
	flow4 := []Field{nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIPAddr, nftables.TypeInetService}
	flow6 := []Field{nftables.TypeIP6Addr, nftables.TypeInetService, nftables.TypeIP6Addr, nftables.TypeInetService}
	// Keep: an unchanged re-apply leaves the ticks alone (a diff that empties a set
	// is a deleting commit, which costs a grace period: BENCHMARKS.md §3).
	t.Sets = append(t.Sets, &Set{Name: SetTick4, Fields: flow4, Dynamic: true, Timeout: tick, Size: natMapSize, Keep: true,
		Comment: "flows refreshed within the last tick (voip_refresh)"})
	ticks := []Rule{rule(addrInPrefix(addrField{}, s.Subnet4, false), withUDP(tickFlow(false, SetTick4)), jump(ChainRefresh))}
	if s.Subnet6.IsValid() {
		t.Sets = append(t.Sets, &Set{Name: SetTick6, Fields: flow6, Dynamic: true, Timeout: tick, Size: natMapSize, Keep: true,
			Comment: "flows refreshed within the last tick (voip_refresh)"})
		ticks = append(ticks, rule(addrInPrefix(addrField{v6: true}, s.Subnet6, false), withUDP(tickFlow(true, SetTick6)), jump(ChainRefresh)))
	}
	t.Chains = append(t.Chains, &Chain{Name: ChainRefresh, Comment: "phones' flows: media tracking, mapping refresh, pinholes (once a tick per flow)", Rules: rs})
	insertAfter(t, "voip_out", oifname(s.WAN, true).Text+" "+counterName(CounterLAN).Text+" drop", ticks)
}

// withUDP puts the `meta l4proto udp` that a statement's `udp sport` implies in
// front of its expressions (nft adds it when it parses the statement and hides it
// when it lists it).
func withUDP(st Stmt) Stmt {
	st.Exprs = append(l4proto(unix.IPPROTO_UDP), st.Exprs...)
	return st
}

// addFullCone adds the full cone's sets and chains and returns its refresh rules
// (for voip_refresh).
func addFullCone(t *Table, s Spec) []Rule {
	n := s.NAT
	wan := s.WAN
	t.Counters = append(slices.Clone(t.Counters), CounterNATInbound, CounterNATRemapped, CounterNATExhausted)
	v4port := []Field{nftables.TypeIPAddr, nftables.TypeInetService}
	port := []Field{nftables.TypeInetService}
	if len(n.Ports) > 0 {
		t.Sets = append(t.Sets, &Set{Name: SetNATPorts, Fields: port, Interval: true,
			Comment: "phone UDP ports with endpoint-independent mappings", Elems: portSpanElems(n.Ports)})
	}
	byKey := func(e nftables.SetElement) []byte { return e.Key }
	t.Sets = append(t.Sets,
		&Set{Name: SetNATOut4, Fields: v4port, Data: port, Dynamic: true, Timeout: n.Timeout, Size: natMapSize,
			Keep: true, Carry: keepEndpoints(s, byKey),
			Comment: "full cone: phone ip . port to its external port"},
		&Set{Name: SetNATIn4, Fields: port, Data: v4port, Dynamic: true, Timeout: n.Timeout, Size: natMapSize,
			Keep: true, Carry: keepEndpoints(s, func(e nftables.SetElement) []byte { return e.Val }),
			Comment: "full cone: external port to the phone ip . port behind it"},
		&Set{Name: SetNATHeld4, Fields: port, Dynamic: true, Timeout: n.Timeout, Size: natMapSize,
			Keep: true, Carry: renew(n.Timeout, nil), Comment: "full cone: external ports held by a mapping"},
		&Set{Name: SetNATEps4, Fields: v4port, Dynamic: true, Timeout: n.Timeout, Size: natMapSize,
			Keep: true, Carry: keepEndpoints(s, byKey), Comment: "full cone: phone endpoints with a mapping"},
		&Set{Name: SetNATClaim4, Fields: port, Dynamic: true, Timeout: claimTimeout, Size: natMapSize,
			Comment: "full cone: ports being claimed (one claim each)"},
	)
	v6 := s.Subnet6.IsValid()
	if v6 {
		t.Sets = append(t.Sets, &Set{Name: SetPinhole6, Fields: []Field{nftables.TypeIP6Addr, nftables.TypeInetService},
			Dynamic: true, Timeout: n.Timeout, Size: natMapSize, Keep: true, Carry: keepEndpoints(s, byKey),
			Comment: "phone ip6 . port open to inbound UDP (IPv6 has no NAT)"})
	}
	ports := Stmt{}
	if len(n.Ports) > 0 {
		ports = udpSportIn(SetNATPorts)
	}

	// dstnat: new inbound UDP to the router's own address on a mapped port goes to the phone.
	in := []Stmt{iifname(wan, false), fibDaddrLocal()}
	if !n.EIF {
		in = append(in, saddrIn(false, SetPlatform4))
	}
	in = append(in, dnatUDPDportMap(SetNATIn4, n.EIF))
	t.Chains = append(t.Chains, &Chain{Name: ChainNATDstnat, Comment: "full cone: inbound through a mapping",
		Hook:  &Hook{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, HookName: "prerouting", Priority: -100, PrioText: "dstnat"},
		Rules: []Rule{rules(in...)}})

	// srcnat: an endpoint's flows leave on its mapped port; outside nat.port, a port
	// that a mapping holds is not kept.
	if pr := chainByName(t, "postrouting"); pr != nil {
		phones := addrInPrefix(addrField{}, s.Subnet4, false)
		var first []Rule
		if n.WANAddr.Is4() {
			first = append(first, rule(oifname(wan, false), phones, snatUDPSaddrSportMap(n.WANAddr, SetNATOut4)))
		}
		first = append(first, rule(oifname(wan, false), phones, udpSportIn(SetNATHeld4), masqueradeRandom()))
		pr.Rules = append(first, pr.Rules...)
	}

	// Learning, in voip_refresh (jumped to from voip_out, forward, before source NAT:
	// the phone's endpoint is still in the headers): a base chain of its own would cost every packet the router
	// sends a hook traversal (see BENCHMARKS.md). Router-sent packets from a phone's
	// address (the keep-alive helper's) refresh the mapping in the output hook, where
	// the router's own new flows from a VoIP address are mapped too.
	phones := addrInPrefix(addrField{}, s.Subnet4, false)
	phones6 := addrInPrefix(addrField{v6: true}, s.Subnet6, false)
	refresh := func(pre ...Stmt) []Rule {
		var rs []Rule
		if n.WANAddr.Is4() { // without the snat rule, no IPv4 mapping is made or kept
			rs = append(rs,
				rules(append(pre, phones, ports, ctDirection(false), ctStatus(ctStatusSNAT, "snat"), refreshMappings(false, ports.Text == ""))...),
				rules(append(pre, phones, ports, ctDirection(true), ctStatus(ctStatusDNAT, "dnat"), refreshMappings(true, ports.Text == ""))...))
		}
		if v6 {
			rs = append(rs, rules(append(pre, phones6, ports, updatePinhole6(SetPinhole6))...))
		}
		return rs
	}
	learn, output := refresh(), refresh(oifname(wan, false))
	var claimJump []Rule
	if n.WANAddr.Is4() {
		// One rule on the hot path; the choice itself only for a new endpoint. The
		// router's own flows from a VoIP address (voipgw diagnose from the gateway
		// address) are mapped like a phone's.
		toClaim := []Stmt{phones, ports, ctState(false, expr.CtStateBitNEW), endpointIn(true, SetNATEps4, ports.Text == ""), jump(ChainNATClaim)}
		claimJump = append(claimJump, rules(toClaim...))
		output = append(output, rules(append([]Stmt{oifname(wan, false)}, toClaim...)...))
		claim := []Rule{rule(metaNfproto(false), udpSportNotIn(SetNATHeld4), claimOwnPort(), ret())}
		for range remapTries {
			claim = append(claim, rule(udpIPv4(), claimRemapPort(n.Remap.First, uint32(n.Remap.Last-n.Remap.First)+1), ret()))
		}
		claim = append(claim, rule(counterName(CounterNATExhausted), drop()))
		t.Chains = append(t.Chains, &Chain{Name: ChainNATClaim, Comment: "full cone: choose a new endpoint's external port", Rules: claim})
	}
	// The claim is for a flow's first packet only: after the `ct status confirmed`
	// accept and the invalid drop, before the allowlist.
	insertAfter(t, "voip_out", "ct state invalid drop", claimJump)
	t.Chains = append(t.Chains, &Chain{Name: ChainNATOutput, Comment: "full cone: the router's packets from a VoIP address (keep-alives, self-tests)",
		Hook: filterHook(nftables.ChainHookOutput, "output", 0, "filter"), Rules: output})

	// voip_in: what came in through a mapping (dnat) or a pinhole is accepted, counted.
	if vin := chainByName(t, "voip_in"); vin != nil && len(vin.Rules) > 0 {
		accepts := []Rule{rule(ctStatus(ctStatusDNAT, "dnat"), counterName(CounterNATInbound), accept())}
		if v6 {
			r := []Stmt{daddrDportIn6(SetPinhole6)}
			if !n.EIF {
				r = append(r, saddrIn(true, SetPlatform6))
			}
			accepts = append(accepts, rules(append(r, counterName(CounterNATInbound), accept())...))
		}
		last := len(vin.Rules) - 1 // the final counted drop stays last
		vin.Rules = slices.Concat(vin.Rules[:last], accepts, vin.Rules[last:])
	}
	return learn
}

// addMediaTracking adds the media sets and returns the rules that track the
// phones' media flows (for voip_refresh).
func addMediaTracking(t *Table, s Spec) []Rule {
	n := s.NAT
	t.Sets = append(t.Sets,
		&Set{Name: SetMediaPorts, Fields: []Field{nftables.TypeInetService}, Interval: true,
			Comment: "destination UDP ports of media flows (keep-alive helper)", Elems: portSpanElems(n.MediaPorts)},
		&Set{Name: SetMediaOut4, Fields: []Field{nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIPAddr, nftables.TypeInetService},
			Dynamic: true, Timeout: n.Keepalive, Size: n.MediaMax, Keep: true, Carry: renew(n.Keepalive, nil),
			Comment: "media flows whose phone sent within the keep-alive interval"},
	)
	rs := []Rule{rule(udpDportIn(SetMediaPorts), updateFlow(false, SetMediaOut4))}
	if s.Subnet6.IsValid() {
		t.Sets = append(t.Sets, &Set{Name: SetMediaOut6, Fields: []Field{nftables.TypeIP6Addr, nftables.TypeInetService, nftables.TypeIP6Addr, nftables.TypeInetService},
			Dynamic: true, Timeout: n.Keepalive, Size: n.MediaMax, Keep: true, Carry: renew(n.Keepalive, nil),
			Comment: "media flows whose phone sent within the keep-alive interval"})
		rs = append(rs, rule(udpDportIn(SetMediaPorts), updateFlow(true, SetMediaOut6)))
	}
	// In voip_refresh (jumped to from voip_out: phones to WAN only, after the LAN
	// and non-WAN drops, before the established accept), so a live flow's element is
	// refreshed at least every tick. A base chain of its own cost every forwarded
	// packet a hook traversal (see BENCHMARKS.md). A new flow the allowlist then
	// drops refreshes an element too, but never gets a conntrack entry, so the
	// helper never follows it.
	return rs
}

// keepEndpoints is the Carry of the NAT maps: elements whose phone endpoint (taken
// from the element by ep) is still in the VoIP subnet and the configured ports.
func keepEndpoints(s Spec, ep func(nftables.SetElement) []byte) func([]nftables.SetElement) []nftables.SetElement {
	return renew(s.NAT.Timeout, func(old []nftables.SetElement) []nftables.SetElement {
		var out []nftables.SetElement
		for _, e := range old {
			ap, err := ParseEndpoint(ep(e))
			if err != nil || !(s.Subnet4.Contains(ap.Addr()) || (s.Subnet6.IsValid() && s.Subnet6.Contains(ap.Addr()))) {
				continue
			}
			if len(s.NAT.Ports) > 0 && !slices.ContainsFunc(s.NAT.Ports, func(p config.PortSpan) bool { return p.First <= ap.Port() && ap.Port() <= p.Last }) {
				continue
			}
			out = append(out, e)
		}
		return out
	})
}

// renew gives carried elements the set's full timeout again. Apply carries an
// element with its remaining time as its own timeout, and `update` refreshes an
// element to its own timeout: a mapping carried with 3 s left would otherwise
// expire 3 s after every packet from then on. A re-apply so extends a live
// element's life by at most one timeout.
func renew(d time.Duration, pick func([]nftables.SetElement) []nftables.SetElement) func([]nftables.SetElement) []nftables.SetElement {
	return func(old []nftables.SetElement) []nftables.SetElement {
		if pick != nil {
			old = pick(old)
		}
		for i := range old {
			old[i].Timeout = d
		}
		return old
	}
}

// rules is rule without the empty statements optional parts leave.
func rules(stmts ...Stmt) Rule {
	var out []Stmt
	for _, s := range stmts {
		if s.Text != "" {
			out = append(out, s)
		}
	}
	return Rule{Stmts: out}
}

func chainByName(t *Table, name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Conntrack status bits (IPS_SRC_NAT, IPS_DST_NAT).
const (
	ctStatusConfirmed = 0x08
	ctStatusSNAT      = 0x10
	ctStatusDNAT      = 0x20
)

// Key layout of the maps as the kernel stores them (each field padded to 4 bytes).

// NATKey4 is the nat_out4 key / nat_in4 data: an IPv4 endpoint.
func NATKey4(ap netip.AddrPort) []byte {
	b := ap.Addr().AsSlice()
	return append(b, byte(ap.Port()>>8), byte(ap.Port()), 0, 0)
}

// PortKey is the nat_in4 key and the nat_out4 data: a port (2 bytes; only fields
// of a concatenation are padded to 4).
func PortKey(port uint16) []byte { return []byte{byte(port >> 8), byte(port)} }

// ParseEndpoint reads an `ip . port` (or `ip6 . port`) key or data back.
func ParseEndpoint(b []byte) (netip.AddrPort, error) {
	switch len(b) {
	case 8:
		a, _ := netip.AddrFromSlice(b[:4])
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[4:6])), nil
	case 20:
		a, _ := netip.AddrFromSlice(b[:16])
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:18])), nil
	}
	return netip.AddrPort{}, fmt.Errorf("endpoint of %d bytes, want 8 or 20", len(b))
}

// FlowKey is a media_out4/6 key: phone ip . port . remote ip . port.
func FlowKey(phone, remote netip.AddrPort) []byte {
	var b []byte
	for _, ap := range []netip.AddrPort{phone, remote} {
		b = append(b, ap.Addr().AsSlice()...)
		b = append(b, byte(ap.Port()>>8), byte(ap.Port()), 0, 0)
	}
	return b
}
