package firewall

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/lab"
)

func natSpec(eif bool, ports ...config.PortSpan) Spec {
	s := labSpec()
	s.NAT = NATSpec{Enabled: true, Ports: ports, EIF: eif, Timeout: 5 * time.Minute, Remap: config.PortSpan{First: 20000, Last: 20099}, WANAddr: netip.MustParseAddr("198.51.100.2"),
		Keepalive: 15 * time.Second, MediaPorts: []config.PortSpan{{First: 40000, Last: 65000}}, MediaMax: 2048}
	return s
}

func chainRules(t *testing.T, tbl *Table, name string) []string {
	t.Helper()
	c := chainByName(tbl, name)
	if c == nil {
		t.Fatalf("no chain %s", name)
	}
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.Text())
	}
	return out
}

// The table as data: which rules full cone adds where, for both filtering modes.
func TestBuildNAT(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  Spec
		in    string // the dnat rule
		in6   string // the pinhole accept
		ports bool
	}{
		{"provider, all ports", natSpec(false),
			`iifname "wan0" fib daddr type local ip saddr @platform4 dnat ip to udp dport map @nat_in4`,
			`ip6 daddr . udp dport @pinhole6 ip6 saddr @platform6 counter name "nat_inbound" accept`, false},
		{"endpoint-independent, listed ports", natSpec(true, config.PortSpan{First: 5060, Last: 5060}, config.PortSpan{First: 10000, Last: 20000}),
			`iifname "wan0" fib daddr type local meta nfproto ipv4 dnat ip to udp dport map @nat_in4`,
			`ip6 daddr . udp dport @pinhole6 counter name "nat_inbound" accept`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := Build(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := chainRules(t, tbl, ChainNATDstnat); len(got) != 1 || got[0] != tc.in {
				t.Errorf("dstnat = %q, want %q", got, tc.in)
			}
			post := chainRules(t, tbl, "postrouting")
			if len(post) != 3 || !strings.Contains(post[0], "snat ip to 198.51.100.2:ip saddr . udp sport map @nat_out4") ||
				!strings.Contains(post[1], "udp sport @nat_held4 masquerade random") ||
				!strings.HasSuffix(post[2], " masquerade") {
				t.Errorf("postrouting: mapping, then held port (outside nat.port), then plain masquerade; got\n%s", strings.Join(post, "\n"))
			}
			// Learning: voip_out's tick rules (before the confirmed accept, so every
			// flow, one-way too, refreshes) jump to voip_refresh at most once a second
			// per flow: refresh (own flows, inbound-started flows), IPv6 pinholes. After
			// the confirmed accept (a flow's first packet only), a new flow of an
			// endpoint without a mapping goes to nat_claim: its own port, remapTries
			// draws from the remap range, a counted drop; all claims locked by nat_claim4.
			out := chainRules(t, tbl, "voip_out")
			confirmed := slices.Index(out, "ct status confirmed accept")
			invalid := slices.Index(out, "ct state invalid drop")
			if confirmed < 0 || invalid < confirmed {
				t.Fatalf("voip_out: no confirmed accept before the invalid drop:\n%s", strings.Join(out, "\n"))
			}
			var ticks []int
			for i, r := range out {
				if strings.Contains(r, "@tick") {
					ticks = append(ticks, i)
					if i > confirmed || !strings.HasSuffix(r, " } jump voip_refresh") {
						t.Errorf("voip_out: tick rule %d must come before the confirmed accept and jump to voip_refresh: %s", i, r)
					}
				}
				if strings.Contains(r, "@nat_") && !strings.Contains(r, "jump nat_claim") {
					t.Errorf("voip_out: per-packet learning outside voip_refresh: %s", r)
				}
			}
			if len(ticks) != 2 || out[ticks[0]] != "ip saddr 192.0.2.0/25 ip saddr . udp sport . ip daddr . udp dport != @tick4 add @tick4 { ip saddr . udp sport . ip daddr . udp dport } jump voip_refresh" ||
				out[ticks[1]] != "ip6 saddr 2001:db8:20::/64 ip6 saddr . udp sport . ip6 daddr . udp dport != @tick6 add @tick6 { ip6 saddr . udp sport . ip6 daddr . udp dport } jump voip_refresh" {
				t.Errorf("voip_out: want a tick rule per family:\n%s", strings.Join(out, "\n"))
			}
			claimAt := slices.IndexFunc(out, func(r string) bool { return strings.HasSuffix(r, "jump nat_claim") })
			if claimAt < invalid {
				t.Errorf("voip_out: the claim must come after the confirmed accept and the invalid drop (first packets only):\n%s", strings.Join(out, "\n"))
			}
			var lr []string
			for _, r := range chainRules(t, tbl, ChainRefresh) {
				if strings.Contains(r, "@nat_") || strings.Contains(r, "@pinhole6") {
					lr = append(lr, r)
				}
			}
			if len(lr) != 3 {
				t.Fatalf("voip_refresh has %d learning rules, want 3:\n%s", len(lr), strings.Join(chainRules(t, tbl, ChainRefresh), "\n"))
			}
			lr = append(lr[:2], out[claimAt])
			if got := chainRules(t, tbl, ChainNATOutput); len(got) != 4 || !strings.HasPrefix(got[0], `oifname "wan0" `+lr[0]) || got[3] != `oifname "wan0" `+lr[2] {
				t.Errorf("nat_output must refresh mappings of router-sent packets from a phone's address:\n%s", strings.Join(got, "\n"))
			}
			for i, want := range []string{"ct direction original ct status snat", "ct direction reply ct status dnat"} {
				if !strings.Contains(lr[i], want) || !strings.Contains(lr[i], "update @nat_eps4 { ip saddr . udp sport }") {
					t.Errorf("learn rule %d must refresh all four sets (%s):\n%s", i, want, lr[i])
				}
			}
			if !strings.HasSuffix(lr[2], "ct state new ip saddr . udp sport != @nat_eps4 jump nat_claim") {
				t.Errorf("learn rule 2 must send a new endpoint's first packet to nat_claim: %s", lr[2])
			}
			cr := chainRules(t, tbl, ChainNATClaim)
			if len(cr) != 2+remapTries {
				t.Fatalf("nat_claim has %d rules, want %d:\n%s", len(cr), 2+remapTries, strings.Join(cr, "\n"))
			}
			if own := cr[0]; !strings.HasPrefix(own, "meta nfproto ipv4 udp sport != @nat_held4 update @nat_claim4 { udp sport limit rate 1/hour burst 1 packets } update @nat_out4 { ip saddr . udp sport : udp sport }") ||
				!strings.HasSuffix(own, " return") {
				t.Errorf("nat_claim rule 0 must claim the endpoint's own port when no mapping holds it:\n%s", own)
			}
			draw := "numgen random mod 100 offset 20000"
			if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 {
				draw = "numgen random mod 6553600 offset 1310720000"
			}
			claimRules := tbl.Chains[slices.IndexFunc(tbl.Chains, func(c *Chain) bool { return c.Name == ChainNATClaim })].Rules
			for i := 1; i <= remapTries; i++ {
				if want := "meta nfproto ipv4 meta l4proto udp " + draw + " != @nat_held4 update @nat_claim4 { " + draw + " limit rate 1/hour burst 1 packets } update @nat_out4 { ip saddr . udp sport : " + draw + " }"; !strings.HasPrefix(cr[i], want) ||
					!strings.HasSuffix(cr[i], `counter name "nat_remapped" return`) || !claimRules[i].ListOnly() {
					t.Errorf("nat_claim rule %d must draw a remap port (list-only):\n%s\nwant it to start with\n%s", i, cr[i], want)
				}
			}
			if got := cr[1+remapTries]; got != `counter name "nat_exhausted" drop` {
				t.Errorf("nat_claim's last rule must drop what found no port: %s", got)
			}
			learn := strings.Join(lr, "\n")
			if got := strings.Contains(learn, "udp sport @nat_ports"); got != tc.ports {
				t.Errorf("learn rules restricted to nat_ports: %v, want %v:\n%s", got, tc.ports, learn)
			}
			hasSet := slices.ContainsFunc(tbl.Sets, func(s *Set) bool { return s.Name == SetNATPorts })
			if hasSet != tc.ports {
				t.Errorf("nat_ports set present %v, want %v", hasSet, tc.ports)
			}
			if !slices.Contains(tbl.Counters, CounterNATInbound) || slices.Contains(Counters, CounterNATInbound) {
				t.Errorf("table counters %v must include %s without changing the package's list", tbl.Counters, CounterNATInbound)
			}
		})
	}
	t.Run("disabled adds nothing", func(t *testing.T) {
		base, _ := Build(labSpec())
		s := labSpec()
		s.NAT = NATSpec{Enabled: false, Timeout: time.Minute}
		off, _ := Build(s)
		if base.Render() != off.Render() {
			t.Errorf("nat disabled changed the table")
		}
	})
}

func TestNATKeys(t *testing.T) {
	ap := netip.MustParseAddrPort("192.0.2.10:5060")
	got, err := ParseEndpoint(NATKey4(ap))
	if err != nil || got != ap {
		t.Errorf("round trip %s: %s, %v", ap, got, err)
	}
	if _, err := ParseEndpoint([]byte{1, 2, 3}); err == nil {
		t.Errorf("a 3-byte endpoint parsed")
	}
	if k := FlowKey(ap, netip.MustParseAddrPort("203.0.113.10:40000")); len(k) != 16 {
		t.Errorf("v4 flow key is %d bytes, want 16", len(k))
	}
}

// The NAT part installed through netlink lists back exactly as rendered, and the
// maps take and give back elements with data.
func TestNATAppliesAndListsBack(t *testing.T) {
	requireNft(t)
	ns := lab.TestNS(t, "nat")
	for _, spec := range []Spec{natSpec(false), natSpec(true, config.PortSpan{First: 5060, Last: 5060}, config.PortSpan{First: 10000, Last: 20000})} {
		tbl, err := Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		applyListsBack(t, ns, tbl)
	}
	// A map element with data, read back through netlink.
	phone := netip.MustParseAddrPort("192.0.2.10:5060")
	err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		defer c.CloseLasting()
		s, err := c.GetSetByName(&nftables.Table{Name: "voipgw", Family: nftables.TableFamilyINet}, SetNATOut4)
		if err != nil {
			return err
		}
		if err := c.SetAddElements(s, []nftables.SetElement{{Key: NATKey4(phone), Val: PortKey(5062)}}); err != nil {
			return err
		}
		return c.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := nftList(t, ns, "voipgw"); !strings.Contains(out, "192.0.2.10 . 5060 expires") || !strings.Contains(out, ": 5062") {
		t.Errorf("nft does not list the element as phone : external:\n%s", out)
	}
}

// voipgw render with full cone is valid nft input that loads to the same table.
func TestNATRenderLoadsWithNft(t *testing.T) {
	checkRenderLoads(t, "natnft", natSpec(true, config.PortSpan{First: 5060, Last: 5060}))
}

// Without a WAN address at apply there is no snat rule, so no IPv4 mapping may be
// made or refreshed (it would not be the port the phone leaves on); IPv6 pinholes stay.
func TestBuildNATWithoutWANAddress(t *testing.T) {
	s := natSpec(true)
	s.NAT.WANAddr = netip.Addr{}
	tbl, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"voip_out", ChainRefresh, "postrouting", ChainNATOutput} {
		for _, r := range chainRules(t, tbl, c) {
			if strings.Contains(r, "@nat_out4") || strings.Contains(r, "@nat_eps4") {
				t.Errorf("%s: %s", c, r)
			}
		}
	}
	if !slices.ContainsFunc(chainRules(t, tbl, ChainRefresh), func(r string) bool { return strings.Contains(r, "@pinhole6") }) {
		t.Errorf("voip_refresh lost the IPv6 pinholes")
	}
	for _, r := range chainRules(t, tbl, ChainRefresh) {
		if strings.Contains(r, "@nat_") {
			t.Errorf("%s: %s", ChainRefresh, r)
		}
	}
}

// Dynamic sets with the kernel's default cap are sent without a size: a size makes
// the kernel allocate the set's hash table for it up front (about 2 MiB each; the
// lab table went from +25 MB of kernel memory to +0.6 MB). A rule's dynset gives
// them the cap; a set no rule fills lists no size, so Build leaves it out there.
func TestDynamicSetsSentWithoutDefaultSize(t *testing.T) {
	for _, wan := range []netip.Addr{netip.MustParseAddr("198.51.100.2"), {}} {
		s := natSpec(true)
		s.NAT.WANAddr = wan
		tbl, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		nt := &nftables.Table{Name: tbl.Name, Family: nftables.TableFamilyINet}
		dynamic := 0
		for _, set := range tbl.Sets {
			ns, err := set.nft(nt)
			if err != nil {
				t.Fatal(err)
			}
			if set.Dynamic {
				dynamic++
				if ns.Size != 0 && set.Size == DynsetDefaultSize {
					t.Errorf("wan %v: set %s sent with size %d", wan, set.Name, ns.Size)
				}
			}
			bound := strings.Contains(tbl.Render(), "@"+set.Name+" {")
			if set.Dynamic && set.Size == 0 && bound {
				t.Errorf("wan %v: set %s is filled by a rule but has no size (the kernel lists 65535)", wan, set.Name)
			}
		}
		if dynamic < 5 {
			t.Errorf("wan %v: %d dynamic sets, want the NAT and tick sets", wan, dynamic)
		}
	}
}

// The refresh tick is a quarter of the shortest lifetime it keeps up (mapping
// timeout, keep-alive interval), at most a second.
func TestRefreshTick(t *testing.T) {
	for _, tc := range []struct {
		timeout, keepalive, want time.Duration
	}{
		{5 * time.Minute, 15 * time.Second, time.Second},
		{5 * time.Second, 15 * time.Second, time.Second},
		{5 * time.Minute, 2 * time.Second, 500 * time.Millisecond},
		{5 * time.Minute, time.Second, 250 * time.Millisecond},
		{5 * time.Minute, 0, time.Second},
	} {
		s := natSpec(true)
		s.NAT.Timeout = tc.timeout
		s.NAT.Keepalive, s.NAT.MediaPorts, s.NAT.MediaMax = tc.keepalive, []config.PortSpan{{First: 40000, Last: 65000}}, 1024
		tbl, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{SetTick4, SetTick6} {
			i := slices.IndexFunc(tbl.Sets, func(x *Set) bool { return x.Name == name })
			if i < 0 {
				t.Fatalf("no set %s", name)
			}
			if got := tbl.Sets[i].Timeout; got != tc.want {
				t.Errorf("timeout %v, keep-alive %v: %s timeout %v, want %v", tc.timeout, tc.keepalive, name, got, tc.want)
			}
		}
	}
}
