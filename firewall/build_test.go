package firewall

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/uci"
)

const sbcAddr = "203.0.113.10"

func exampleConfig(t *testing.T) *config.Config {
	t.Helper()
	c, _, err := config.Load("../openwrt/voipgw.config")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeResolved gives every host name of the config an address of its own, far
// enough apart that no two merge into a range: 198.18.N.1, and sbc.icvoip.net
// the well-known sbcAddr plus an IPv6 address.
func fakeResolved(c *config.Config) map[string][]netip.Addr {
	m := map[string][]netip.Addr{}
	for i, n := range HostNames(c) {
		m[n] = []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i), 1})}
	}
	m["sbc.icvoip.net"] = []netip.Addr{netip.MustParseAddr(sbcAddr), netip.MustParseAddr("2001:db8:5bc::10")}
	return m
}

func exampleSpec(t *testing.T) (Spec, []Unresolved) {
	t.Helper()
	c := exampleConfig(t)
	return SpecFromConfig(c, fakeResolved(c), c.Hash())
}

func setByName(tbl *Table, name string) *Set {
	for _, s := range tbl.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func elemTexts(t *testing.T, tbl *Table, name string) []string {
	t.Helper()
	s := setByName(tbl, name)
	if s == nil {
		t.Fatalf("no set %s", name)
	}
	var out []string
	for _, e := range s.Elements() {
		out = append(out, e.Text)
	}
	return out
}

func TestBuildExampleAllowlist(t *testing.T) {
	spec, missing := exampleSpec(t)
	if len(missing) != 0 {
		t.Errorf("unresolved with every name resolved: %v", missing)
	}
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	allow4, ranges4 := elemTexts(t, tbl, SetAllow4), elemTexts(t, tbl, SetAllow4Range)
	allow6, ranges6 := elemTexts(t, tbl, SetAllow6), elemTexts(t, tbl, SetAllow6Range)

	// sbc.icvoip.net: udp-tcp/5060 tcp/5061 udp-tcp/5080 tcp/5081 udp/40000-65000.
	for _, want := range []struct {
		set  []string
		name string
		elem string
	}{
		{allow4, SetAllow4, sbcAddr + " . udp . 5060"},
		{allow4, SetAllow4, sbcAddr + " . tcp . 5060"},
		{allow4, SetAllow4, sbcAddr + " . tcp . 5061"},
		{allow4, SetAllow4, sbcAddr + " . udp . 5080"},
		{ranges4, SetAllow4Range, sbcAddr + " . tcp . 5080-5081"}, // adjacent ports merge
		{ranges4, SetAllow4Range, sbcAddr + " . udp . 40000-65000"},
		{ranges4, SetAllow4Range, "0.0.0.0/0 . udp . 53"},
		{ranges4, SetAllow4Range, "0.0.0.0/0 . tcp . 53"},
		{ranges4, SetAllow4Range, "0.0.0.0/0 . udp . 123"},
		{allow6, SetAllow6, "2001:db8:5bc::10 . udp . 5060"},
		{ranges6, SetAllow6Range, "2001:db8:5bc::10 . tcp . 5060-5061"}, // alone in IPv6: 5060 and 5061 merge
		{ranges6, SetAllow6Range, "2001:db8:5bc::10 . tcp . 5080-5081"},
		{ranges6, SetAllow6Range, "2001:db8:5bc::10 . udp . 40000-65000"},
		{ranges6, SetAllow6Range, "::/0 . udp . 53"},
		{allow4, SetAllow4, "20.19.96.56 . tcp . 443"}, // yealink, a literal address
	} {
		if !slices.Contains(want.set, want.elem) {
			t.Errorf("%s has no %q", want.name, want.elem)
		}
	}
	// The SBC has no other ports than its own.
	var sbc []string
	for _, e := range slices.Concat(allow4, ranges4) {
		if strings.HasPrefix(e, sbcAddr+" ") {
			sbc = append(sbc, e)
		}
	}
	if len(sbc) != 6 {
		t.Errorf("elements of the SBC: %q, want 6", sbc)
	}
	// Nothing of the webex profile (disabled) or the disabled own-pbx.
	for _, e := range slices.Concat(allow4, ranges4) {
		if strings.Contains(e, "170.72.0.0/16") || strings.Contains(e, " . 444") {
			t.Errorf("webex element %q", e)
		}
	}

	// Exact elements in the hash sets, everything with a range in the interval sets.
	for _, name := range []string{SetAllow4, SetAllow6} {
		s := setByName(tbl, name)
		if s.Interval {
			t.Errorf("%s is an interval set", name)
		}
		for _, e := range s.Elements() {
			if strings.ContainsAny(e.Text, "/-") || e.KeyEnd != nil {
				t.Errorf("%s: non-exact element %q", name, e.Text)
			}
		}
	}
	for _, name := range []string{SetAllow4Range, SetAllow6Range} {
		s := setByName(tbl, name)
		if !s.Interval {
			t.Errorf("%s is not an interval set", name)
		}
		for _, e := range s.Elems {
			if !strings.ContainsAny(e.Text, "/-") || e.KeyEnd == nil {
				t.Errorf("%s: exact element %q (or without key end)", name, e.Text)
			}
		}
	}
	// Keys: 4-byte registers, address . proto . port.
	if len(setByName(tbl, SetAllow4).Elements()) == 0 {
		t.Error("allow4 has no elements")
	}
	for _, e := range setByName(tbl, SetAllow4).Elements() {
		if len(e.Key) != 12 {
			t.Errorf("allow4 key of %q is %d bytes", e.Text, len(e.Key))
		}
	}
	for _, e := range setByName(tbl, SetAllow6Range).Elems {
		if len(e.Key) != 24 || len(e.KeyEnd) != 24 {
			t.Errorf("allow6_ranges key of %q is %d/%d bytes", e.Text, len(e.Key), len(e.KeyEnd))
		}
	}

	// Platform sets: the specific destinations, never "anywhere".
	plat4, plat6 := elemTexts(t, tbl, SetPlatform4), elemTexts(t, tbl, SetPlatform6)
	for _, e := range plat4 {
		if e == "0.0.0.0/0" || strings.HasPrefix(e, "0.0.0.0") {
			t.Errorf("platform4 contains %q", e)
		}
	}
	for _, e := range plat6 {
		if e == "::/0" || strings.HasPrefix(e, "::-") {
			t.Errorf("platform6 contains %q", e)
		}
	}
	if !slices.Contains(plat4, sbcAddr) || !slices.Contains(plat6, "2001:db8:5bc::10") || !slices.Contains(plat4, "20.19.96.56") {
		t.Errorf("platform sets miss the SBC: %q %q", plat4, plat6)
	}
}

func chainByNameT(t *testing.T, tbl *Table, name string) *Chain {
	t.Helper()
	for _, c := range tbl.Chains {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no chain %s", name)
	return nil
}

func hasChain(tbl *Table, name string) bool {
	return slices.ContainsFunc(tbl.Chains, func(c *Chain) bool { return c.Name == name })
}

func TestBuildScanToggle(t *testing.T) {
	scanSets := []string{SetScanners4, SetScanners6, SetScanRate4, SetScanRate6}
	scanChains := []string{"wan_scan"}
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprint("enabled=", enabled), func(t *testing.T) {
			spec, _ := exampleSpec(t)
			spec.Scan.Enabled = enabled
			tbl, err := Build(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range scanSets {
				if (setByName(tbl, s) != nil) != enabled {
					t.Errorf("set %s present = %v", s, !enabled)
				}
			}
			for _, c := range scanChains {
				if hasChain(tbl, c) != enabled {
					t.Errorf("chain %s present = %v", c, !enabled)
				}
			}
			// Jumped to from input and forward for packets from WAN; no hook of its own.
			for _, c := range []string{"input", "forward"} {
				if got := slices.Contains(chainRules(t, tbl, c), `iifname "`+spec.WAN+`" jump wan_scan`); got != enabled {
					t.Errorf("chain %s jumps to wan_scan: %v", c, got)
				}
			}
			if hasChain(tbl, "prerouting") {
				t.Errorf("a prerouting base chain costs every received packet a hook traversal")
			}
			r := tbl.Render()
			if strings.Contains(r, "@scanners") != enabled || strings.Contains(r, "scan_rate") != enabled {
				t.Errorf("render mentions scan sets: %v, want %v", !enabled, enabled)
			}
			// The platform sets exist either way (other chains use them).
			if setByName(tbl, SetPlatform4) == nil || setByName(tbl, SetPlatform6) == nil {
				t.Errorf("platform sets missing")
			}
		})
	}
}

func TestBuildForwardComment(t *testing.T) {
	spec, _ := exampleSpec(t)
	c := exampleConfig(t)
	if spec.ConfigHash != c.Hash() || spec.Table != "voipgw" || spec.VoIPIf != "voice" || spec.WAN != "wan" ||
		spec.Subnet4 != netip.MustParsePrefix("192.168.20.0/24") || spec.Subnet6 != netip.MustParsePrefix("fd00:20::/64") {
		t.Errorf("spec = %+v", spec)
	}
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	fwd := chainByNameT(t, tbl, "forward")
	if len(fwd.Rules) == 0 {
		t.Fatal("forward chain is empty")
	}
	first := fwd.Rules[0]
	if want := ConfigComment(c.Hash()); first.Comment != want {
		t.Errorf("forward's first rule comment %q, want %q", first.Comment, want)
	}
	if want := `iifname "voice" jump voip_out comment "voipgw config ` + c.Hash() + `"`; first.Text() != want {
		t.Errorf("forward's first rule %q, want %q", first.Text(), want)
	}
	for _, r := range fwd.Rules[1:] {
		if r.Comment != "" {
			t.Errorf("another forward rule has a comment: %q", r.Text())
		}
	}
}

// renderedChain returns the rule lines of one chain in Render's output.
func renderedChain(t *testing.T, render, name string) []string {
	t.Helper()
	start := strings.Index(render, "\tchain "+name+" {\n")
	if start < 0 {
		t.Fatalf("render has no chain %s", name)
	}
	body := render[start:]
	body = body[strings.Index(body, "\n")+1 : strings.Index(body, "\n\t}\n")]
	var out []string
	for _, l := range strings.Split(body, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") || strings.HasPrefix(l, "type ") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// inOrder checks that each wanted fragment appears in a later line than the one before.
func inOrder(t *testing.T, chain string, lines []string, want ...string) {
	t.Helper()
	i := 0
	for _, w := range want {
		for i < len(lines) && !strings.Contains(lines[i], w) {
			i++
		}
		if i == len(lines) {
			t.Errorf("chain %s: %q missing or out of order in\n%s", chain, w, strings.Join(lines, "\n"))
			return
		}
		i++
	}
}

func TestRenderRuleOrder(t *testing.T) {
	spec, _ := exampleSpec(t)
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := tbl.Render()
	out := renderedChain(t, r, "voip_out")
	inOrder(t, "voip_out", out,
		`oifname != "wan" counter name "blocked_lan" drop`,
		`ct status confirmed accept`,
		`ct state related accept`,
		`ct state invalid drop`,
		`ip daddr . meta l4proto . th dport @allow4 counter name "allowed" accept`,
		`ip daddr . meta l4proto . th dport @allow4_ranges counter name "allowed" accept`,
		`ip6 daddr . meta l4proto . th dport @allow6 counter name "allowed" accept`,
		`ip6 daddr . meta l4proto . th dport @allow6_ranges counter name "allowed" accept`,
	)
	if last := out[len(out)-1]; last != `counter name "blocked_not_allowlisted" drop` {
		t.Errorf("voip_out ends with %q", last)
	}
	// Nothing accepts before the LAN and non-WAN drop.
	for _, l := range out[:1] {
		if strings.Contains(l, "accept") {
			t.Errorf("voip_out starts with an accept: %q", l)
		}
	}
	in := renderedChain(t, r, "voip_in")
	inOrder(t, "voip_in", in,
		`iifname != "wan" counter name "blocked_lan" drop`,
		`ct state established,related accept`,
	)
	if last := in[len(in)-1]; !strings.HasSuffix(last, `counter name "blocked_inbound" drop`) {
		t.Errorf("voip_in ends with %q", last)
	}
	fwd := renderedChain(t, r, "forward")
	inOrder(t, "forward", fwd, `iifname "voice" jump voip_out comment "voipgw config `, `oifname "voice" jump voip_in`)
	rtr := renderedChain(t, r, "voip_to_router")
	if last := rtr[len(rtr)-1]; last != `counter name "blocked_router" drop` {
		t.Errorf("voip_to_router ends with %q", last)
	}
	scan := renderedChain(t, r, "wan_scan")
	inOrder(t, "wan_scan", scan, "@scanners4", "ct state ! new return", "@platform4 return", "@scan_rate4")
	post := renderedChain(t, r, "postrouting")
	inOrder(t, "postrouting", post, `oifname "wan" ip saddr 192.168.20.0/24 masquerade`)
	// Sets before chains; the table starts with the counters.
	if !strings.HasPrefix(r, "table inet voipgw {\n\tcounter allowed {") {
		t.Errorf("render starts %q", r[:min(len(r), 60)])
	}
	if strings.Index(r, "\tset allow4 {") > strings.Index(r, "\tchain ") {
		t.Errorf("a chain is rendered before the sets")
	}
}

func TestSpecFromConfigUnresolved(t *testing.T) {
	src := `config voipgw 'main'
	option wan 'wan'

config vlan 'voice'
	option device 'lan4'
	option ipaddr '192.168.20.1/24'

config profile
	option name 'base'
	option enabled '0'

config profile
	option name 'cloudoe-platform'
	option enabled '0'

config allow
	option name 'own-pbx'
	list dest 'pbx.example.net'
	list dest 'gone.example.net'
	list dest '*.example.org'
	list dest '192.0.2.77'
	list dest '2001:db8:77::/48'
	list port 'udp/5060'
	list port 'tcp/5061'
`
	f, err := uci.Parse("voipgw", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := config.FromUCI(f)
	if err != nil {
		t.Fatal(err)
	}
	names := HostNames(c)
	if !slices.IsSorted(names) || slices.Contains(names, "example.org") || slices.Contains(names, "*.example.org") ||
		!slices.Contains(names, "pbx.example.net") || !slices.Contains(names, "gone.example.net") || !slices.Contains(names, "sbc.icvoip.net") {
		t.Errorf("HostNames = %v", names)
	}
	if len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("HostNames has duplicates: %v", names)
	}

	resolved := map[string][]netip.Addr{
		"pbx.example.net":  {netip.MustParseAddr("198.51.100.5")},
		"gone.example.net": nil,
	}
	spec, missing := SpecFromConfig(c, resolved, "h")
	type miss struct{ source, dest string }
	var got []miss
	for _, m := range missing {
		if m.Reason == "" {
			t.Errorf("unresolved %s without a reason", m.Dest)
		}
		got = append(got, miss{m.Source, m.Dest})
	}
	for _, want := range []miss{
		{"allow own-pbx", "gone.example.net"},
		{"allow own-pbx", "*.example.org"},
		{"profile cloudoe-sbc", "sbc.icvoip.net"},
		{"profile cloudoe-sbc", "sbc-trunk.icvoip.net"},
	} {
		if !slices.Contains(got, want) {
			t.Errorf("unresolved %v missing from %v", want, got)
		}
	}
	if slices.Contains(got, miss{"allow own-pbx", "pbx.example.net"}) {
		t.Errorf("resolved name reported as unresolved")
	}
	for _, m := range missing {
		if m.Dest == "*.example.org" && !strings.Contains(m.Reason, "wildcard") {
			t.Errorf("wildcard reason %q", m.Reason)
		}
	}

	// Only the resolved name and the literal addresses reach the allowlist.
	want := map[string]bool{"198.51.100.5/32": true, "192.0.2.77/32": true, "2001:db8:77::/48": true}
	for _, a := range spec.Allow {
		if !want[a.Prefix.String()] {
			t.Errorf("unexpected allow %v", a)
		}
	}
	if len(spec.Allow) != 6 {
		t.Errorf("%d allow entries, want 6: %v", len(spec.Allow), spec.Allow)
	}
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := tbl.Render()
	for _, s := range []string{"example.org", "gone.example", "icvoip"} {
		if strings.Contains(r, s) {
			t.Errorf("render mentions %q", s)
		}
	}
	for _, e := range []string{"198.51.100.5 . udp . 5060", "192.0.2.77 . tcp . 5061", "2001:db8:77::/48 . udp . 5060"} {
		if !strings.Contains(r, e) {
			t.Errorf("render has no %q", e)
		}
	}

	// With webex on, its wildcards are reported from the profile.
	f2, _ := uci.Parse("voipgw", strings.NewReader(src+"\nconfig profile\n\toption name 'webex'\n"))
	c2, _, err := config.FromUCI(f2)
	if err != nil {
		t.Fatal(err)
	}
	_, missing = SpecFromConfig(c2, fakeResolved(c2), "h")
	var wild []string
	for _, m := range missing {
		if m.Source == "profile webex" {
			wild = append(wild, m.Dest)
		}
	}
	if !slices.Contains(wild, "*.webex.com") || !slices.Contains(wild, "*.wbx2.com") {
		t.Errorf("webex wildcards unresolved: %v", wild)
	}
	// Literal webex subnets, or the base profile's "anywhere", are never unresolved.
	for _, m := range missing {
		if !strings.HasPrefix(m.Dest, "*.") && m.Dest != "gone.example.net" && m.Dest != "*.example.org" {
			t.Errorf("unexpected unresolved %v", m)
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec func(t *testing.T) Spec
	}{
		{"example config", func(t *testing.T) Spec { s, _ := exampleSpec(t); return s }},
		{"lab spec", func(t *testing.T) Spec { return labSpec() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec(t)
			tbl, err := Build(spec)
			if err != nil {
				t.Fatal(err)
			}
			want := tbl.Render()
			r := rand.New(rand.NewPCG(7, 11))
			for i := range 20 {
				s := tc.spec(t)
				r.Shuffle(len(s.Allow), func(i, j int) { s.Allow[i], s.Allow[j] = s.Allow[j], s.Allow[i] })
				if i%2 == 1 {
					s.Allow = append(s.Allow, s.Allow[:len(s.Allow)/2]...) // duplicates change nothing
				}
				tbl, err := Build(s)
				if err != nil {
					t.Fatal(err)
				}
				if got := tbl.Render(); got != want {
					t.Fatalf("render differs after shuffle %d:\n%s", i, firstDiff(want, got))
				}
			}
		})
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d lines", len(al), len(bl))
}

func TestBuildIncompleteSpec(t *testing.T) {
	for _, edit := range []func(*Spec){
		func(s *Spec) { s.Table = "" },
		func(s *Spec) { s.VoIPIf = "" },
		func(s *Spec) { s.WAN = "" },
		func(s *Spec) { s.Subnet4 = netip.Prefix{} },
	} {
		s := labSpec()
		edit(&s)
		if _, err := Build(s); err == nil {
			t.Errorf("Build accepted an incomplete spec %+v", s)
		}
	}
}

// Resolved IPv4-mapped addresses are IPv4 destinations, as catalog.ParseDest treats them.
func TestSpecFromConfigUnmapsResolved(t *testing.T) {
	c := exampleConfig(t)
	resolved := fakeResolved(c)
	resolved["sbc.icvoip.net"] = []netip.Addr{netip.MustParseAddr("::ffff:" + sbcAddr)}
	spec, _ := SpecFromConfig(c, resolved, "h")
	for _, a := range spec.Allow {
		if a.Prefix.Addr().Is4In6() {
			t.Fatalf("mapped address in the allowlist: %v", a)
		}
	}
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(elemTexts(t, tbl, SetAllow4), sbcAddr+" . udp . 5060") {
		t.Errorf("allow4 has no element for the mapped SBC address")
	}
	for _, e := range elemTexts(t, tbl, SetAllow6Range) {
		if strings.Contains(e, "ffff:") {
			t.Errorf("allow6_ranges has %q", e)
		}
	}
}

// Every catalog profile on at once (the most overlap: Webex subnets under the base
// profile's "anywhere", hosts in several profiles) loads into the kernel: the
// interval sets take the normalized elements without EEXIST, and nft lists the
// table back as rendered.
func TestAllProfilesApplyInKernel(t *testing.T) {
	requireNft(t)
	src := `config voipgw 'main'
	option wan 'wan0'
	list lan 'lan0'

config vlan 'voice'
	option device 'voip0'
	option ipaddr '192.0.2.1/25'
	option ip6addr '2001:db8:20::1/64'
`
	for _, p := range []string{"yealink", "gigaset", "polycom", "unity", "webex"} {
		src += "\nconfig profile\n\toption name '" + p + "'\n"
	}
	src += "\nconfig allow\n\tlist dest '20.50.235.0/25'\n\tlist dest '20.50.235.7'\n\tlist dest '2001:db8:aa::/48'\n\tlist port 'udp/1-65535'\n\tlist port 'tcp/443-444'\n"
	f, err := uci.Parse("voipgw", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := config.FromUCI(f)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := SpecFromConfig(c, fakeResolved(c), c.Hash())
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	ns := lab.TestNS(t, "fwall")
	applyListsBack(t, ns, tbl)
}
