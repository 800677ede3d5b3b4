package firewall

import (
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/lab"
)

func mustDest(s string) catalog.Dest {
	d, err := catalog.ParseDest(s)
	if err != nil {
		panic(err)
	}
	return d
}

func learnRules() []LearnRule {
	return []LearnRule{
		{Source: "allow sbc", Dest: mustDest("sbc.example.net"), Ports: mustPorts("udp-tcp/5060", "tcp/5061", "udp/40000-65000")},
		{Source: "allow webex", Dest: mustDest("*.webex.example"), Ports: mustPorts("tcp/443")},
		{Source: "allow webex media", Dest: mustDest("*.webex.example"), Ports: mustPorts("udp/5004", "udp/9000")},
		{Source: "allow deep", Dest: mustDest("*.media.webex.example"), Ports: mustPorts("udp/5005")},
	}
}

func TestMatcher(t *testing.T) {
	m := NewMatcher(learnRules())
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"sbc.example.net", []string{"tcp/5060-5061", "udp/5060", "udp/40000-65000"}},
		{"SBC.Example.NET.", []string{"tcp/5060-5061", "udp/5060", "udp/40000-65000"}},
		{"a.webex.example", []string{"tcp/443", "udp/5004", "udp/9000"}},
		{"x.y.webex.example", []string{"tcp/443", "udp/5004", "udp/9000"}},
		{"a.media.webex.example", []string{"tcp/443", "udp/5004-5005", "udp/9000"}}, // both wildcards
		{"webex.example", nil},     // the apex is not below the wildcard
		{"evilwebex.example", nil}, // a suffix that is not a label boundary
		{"webex.example.evil", nil},
		{"other.example.net", nil},
		{"sbc.example.net.evil", nil},
	} {
		var got []string
		for _, p := range m.Ports(tc.name) {
			got = append(got, p.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Ports(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLearnedElemsRoundTrip(t *testing.T) {
	m := NewMatcher(learnRules())
	l := Learned{Addr: netip.MustParseAddr("203.0.113.70"), Ports: m.Ports("sbc.example.net"), Names: []string{"sbc.example.net"}, Timeout: time.Minute}
	elems := l.Elems()
	if len(elems) != 3 {
		t.Fatalf("elements: %d, want 3 (tcp 5060-5061, udp 5060, udp 40000-65000)", len(elems))
	}
	for i := range elems {
		elems[i].Expires = 30 * time.Second
	}
	got := groupLearned(elems)
	if len(got) != 1 || got[0].Addr != l.Addr || !slices.Equal(got[0].Ports, l.Ports) || !slices.Equal(got[0].Names, l.Names) || got[0].Timeout != 30*time.Second {
		t.Errorf("read back %+v, want %+v", got, l)
	}
}

// A re-apply keeps learned elements only while their names still allow their ports.
func TestCarryLearned(t *testing.T) {
	m := NewMatcher(learnRules())
	a := Learned{Addr: netip.MustParseAddr("203.0.113.71"), Ports: m.Ports("a.webex.example"), Names: []string{"a.webex.example"}, Timeout: time.Minute}
	b := Learned{Addr: netip.MustParseAddr("203.0.113.72"), Ports: m.Ports("sbc.example.net"), Names: []string{"sbc.example.net"}, Timeout: 2 * time.Minute}
	old := append(a.Elems(), b.Elems()...)

	// New config: webex media ports gone, the sbc rule gone.
	nm := NewMatcher([]LearnRule{{Dest: mustDest("*.webex.example"), Ports: mustPorts("tcp/443")}})
	kept := groupLearned(withExpires(carryLearned(nm, 100)(old)))
	if len(kept) != 1 || kept[0].Addr != a.Addr || len(kept[0].Ports) != 1 || kept[0].Ports[0].String() != "tcp/443" {
		t.Errorf("kept %+v, want only %s tcp/443", kept, a.Addr)
	}
	// Same config, size 2: the two elements with the most time left (b's).
	kept2 := carryLearned(m, 2)(old)
	if len(kept2) != 2 || groupLearned(withExpires(kept2))[0].Addr != b.Addr {
		t.Errorf("capped carry kept %+v", groupLearned(withExpires(kept2)))
	}
}

func withExpires(es []nftables.SetElement) []nftables.SetElement {
	for i := range es {
		es[i].Expires = es[i].Timeout
	}
	return es
}

func dnsLabSpec() Spec {
	s := labSpec()
	s.DNS = DNSSpec{Forwarder: true, Gateway4: netip.MustParseAddr("192.0.2.1"), Gateway6: netip.MustParseAddr("2001:db8:20::1"),
		LearnedMax: 8, TTLFloor: 5 * time.Minute, Rules: learnRules()}
	return s
}

func TestBuildWithForwarder(t *testing.T) {
	tbl, err := Build(dnsLabSpec())
	if err != nil {
		t.Fatal(err)
	}
	r := tbl.Render()
	for _, want := range []string{
		"set learned4 {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tsize 16\n\t\tflags interval,timeout\n\t\ttimeout 5m\n",
		"udp dport 53 counter name \"blocked_not_allowlisted\" drop\n\t\ttcp dport 53 counter name \"blocked_not_allowlisted\" drop\n\t\tip daddr . meta l4proto . th dport @allow4 ",
		"ip6 daddr . meta l4proto . th dport @learned6 counter name \"allowed\" accept\n\t\tcounter name \"blocked_not_allowlisted\" drop\n",
		"type nat hook prerouting priority dstnat; policy accept;\n\t\tiifname \"voip0\" meta nfproto ipv4 udp dport 53 dnat ip to 192.0.2.1\n",
		"iifname \"voip0\" meta nfproto ipv6 tcp dport 53 dnat ip6 to 2001:db8:20::1\n",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("render lacks %q:\n%s", want, r)
		}
	}
	// Without the forwarder, the table is exactly the one without DNS.
	plain, _ := Build(labSpec())
	off := labSpec()
	off.DNS.Rules = learnRules()
	offT, _ := Build(off)
	if offT.Render() != plain.Render() || strings.Contains(plain.Render(), "learned") {
		t.Errorf("forwarder off changes the table")
	}
}

// The learned sets and the interception chain install through netlink, list back as
// rendered, and the Learner adds, refreshes, reads and removes elements.
func TestLearnedInKernel(t *testing.T) {
	ns := lab.TestNS(t, "fwlearn")
	spec := dnsLabSpec()
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return Apply(tbl) }); err != nil {
		t.Fatal(err)
	}
	if requireNftOK() {
		got, want := canonical(nftList(t, ns, "voipgw")), canonical(tbl.Render())
		if d := diffLines(want, got); d != "" {
			t.Errorf("kernel listing differs from render (- render, + kernel):\n%s", d)
		}
	}
	m := NewMatcher(spec.DNS.Rules)
	sbc := Learned{Addr: netip.MustParseAddr("203.0.113.70"), Ports: m.Ports("sbc.example.net"), Names: []string{"sbc.example.net"}, Timeout: time.Hour}
	web6 := Learned{Addr: netip.MustParseAddr("2001:db8:cafe::70"), Ports: m.Ports("a.webex.example"), Names: []string{"a.webex.example"}, Timeout: 30 * time.Minute}

	var read []Learned
	err = ns.Do(func() error {
		l, err := NewLearner("voipgw")
		if err != nil {
			return err
		}
		defer l.Close()
		if err := l.Update([]Change{{New: &sbc}, {New: &web6}}); err != nil {
			return err
		}
		// Refresh with a longer timeout and an extra name: delete + add in one batch.
		sbc2 := sbc
		sbc2.Timeout, sbc2.Names = 2*time.Hour, []string{"sbc.example.net", "a.webex.example"}
		sbc2.Ports = UnionPorts(append(slices.Clone(sbc.Ports), m.Ports("a.webex.example")...))
		if err := l.Update([]Change{{Old: &sbc, New: &sbc2}}); err != nil {
			return err
		}
		// A stale belief (the caller thinks web6 had other ports) still works: the
		// retry deletes what the kernel really has.
		stale := web6
		stale.Ports = mustPorts("udp/1-2")
		web6b := web6
		web6b.Timeout = 45 * time.Minute
		if err := l.Update([]Change{{Old: &stale, New: &web6b}}); err != nil {
			return err
		}
		read, err = l.Read()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != 2 {
		t.Fatalf("read back %d addresses: %+v", len(read), read)
	}
	if got := read[0]; got.Addr != sbc.Addr || len(got.Names) != 2 || got.Timeout < 119*time.Minute || got.Timeout > 2*time.Hour {
		t.Errorf("sbc after refresh: %+v", got)
	}
	if got := read[1]; got.Addr != web6.Addr || !slices.Equal(got.Ports, web6.Ports) || got.Timeout < 44*time.Minute || got.Timeout > 45*time.Minute {
		t.Errorf("web6 after stale refresh: %+v", got)
	}

	// The kernel enforces the set's size: the bound holds even if the daemon erred.
	err = ns.Do(func() error {
		l, err := NewLearner("voipgw")
		if err != nil {
			return err
		}
		defer l.Close()
		var ch []Change
		for i := 0; i < 14; i++ { // 14 more single-port addresses: 3 + 14 > size 16 (twice the cap 8)
			a := Learned{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i)}), Ports: mustPorts("tcp/443"), Names: []string{"x.webex.example"}, Timeout: time.Minute}
			ch = append(ch, Change{New: &a})
		}
		return l.Update(ch)
	})
	if !errors.Is(err, unix.ENFILE) {
		t.Errorf("adding beyond the set size: %v, want ENFILE", err)
	}

	// A re-apply with a narrower config keeps only what still matches.
	spec2 := spec
	spec2.DNS.Rules = []LearnRule{{Dest: mustDest("*.webex.example"), Ports: mustPorts("tcp/443", "udp/5004", "udp/9000")}}
	tbl2, _ := Build(spec2)
	if err := ns.Do(func() error { return Apply(tbl2) }); err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error {
		l, err := NewLearner("voipgw")
		if err != nil {
			return err
		}
		defer l.Close()
		read, err = l.Read()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// sbc's address was learned for both names: its webex ports stay, its SIP ports go.
	want := map[netip.Addr]string{sbc.Addr: "tcp/443 udp/5004 udp/9000", web6.Addr: "tcp/443 udp/5004 udp/9000"}
	if len(read) != 2 {
		t.Fatalf("after re-apply: %+v", read)
	}
	for _, r := range read {
		var ps []string
		for _, p := range r.Ports {
			ps = append(ps, p.String())
		}
		if strings.Join(ps, " ") != want[r.Addr] {
			t.Errorf("after re-apply %s has %v, want %s", r.Addr, ps, want[r.Addr])
		}
	}
}

// Elements expire in the kernel after their timeout.
func TestLearnedExpires(t *testing.T) {
	ns := lab.TestNS(t, "fwexp")
	tbl, err := Build(dnsLabSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return Apply(tbl) }); err != nil {
		t.Fatal(err)
	}
	a := Learned{Addr: netip.MustParseAddr("203.0.113.80"), Ports: mustPorts("tcp/443"), Names: []string{"a.webex.example"}, Timeout: 300 * time.Millisecond}
	count := func() int {
		var n int
		if err := ns.Do(func() error {
			l, err := NewLearner("voipgw")
			if err != nil {
				return err
			}
			defer l.Close()
			r, err := l.Read()
			n = len(r)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := ns.Do(func() error {
		l, err := NewLearner("voipgw")
		if err != nil {
			return err
		}
		defer l.Close()
		return l.Update([]Change{{New: &a}})
	}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("right after adding: %d addresses", n)
	}
	time.Sleep(time.Second)
	if n := count(); n != 0 {
		t.Errorf("after the timeout: %d addresses, want 0", n)
	}
}

// requireNftOK reports whether the nft CLI is there for a listing comparison; the
// netlink assertions run without it (the VM suite has no nft).
func requireNftOK() bool {
	_, err := exec.LookPath("nft")
	return err == nil
}
