package dnsfwd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/lab"
)

// fakeLearner keeps the learned sets in memory, as the kernel would: elements per
// address, bounded by size (ENFILE beyond it, like the kernel).
type fakeLearner struct {
	mu      sync.Mutex
	size    int
	have    map[netip.Addr]firewall.Learned
	updates int
	maxSeen int
}

func newFake(size int) *fakeLearner {
	return &fakeLearner{size: size, have: map[netip.Addr]firewall.Learned{}}
}

func (f *fakeLearner) elems(v6 bool) int {
	n := 0
	for a, l := range f.have {
		if a.Is6() == v6 {
			n += len(l.Elems())
		}
	}
	return n
}

func (f *fakeLearner) Update(changes []firewall.Change) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates++
	next := map[netip.Addr]firewall.Learned{}
	for a, l := range f.have {
		next[a] = l
	}
	for _, c := range changes {
		if c.Old != nil {
			if _, ok := next[c.Old.Addr]; !ok {
				return fmt.Errorf("delete %s: not present", c.Old.Addr)
			}
			delete(next, c.Old.Addr)
		}
		if c.New != nil {
			if _, ok := next[c.New.Addr]; ok {
				return fmt.Errorf("add %s: exists", c.New.Addr)
			}
			next[c.New.Addr] = *c.New
		}
	}
	old := f.have
	f.have = next
	for _, v6 := range []bool{false, true} {
		if n := f.elems(v6); n > f.size {
			f.have = old
			return fmt.Errorf("set full: %d > %d", n, f.size)
		} else if n > f.maxSeen {
			f.maxSeen = n
		}
	}
	return nil
}

func (f *fakeLearner) Read() ([]firewall.Learned, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []firewall.Learned
	for _, l := range f.have {
		out = append(out, l)
	}
	return out, nil
}

func (f *fakeLearner) get(a netip.Addr) (firewall.Learned, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.have[a]
	return l, ok
}

func ports(ss ...string) []catalog.PortRange {
	var out []catalog.PortRange
	for _, s := range ss {
		p, err := catalog.ParsePort(s)
		if err != nil {
			panic(err)
		}
		out = append(out, p...)
	}
	return out
}

func dest(s string) catalog.Dest {
	d, err := catalog.ParseDest(s)
	if err != nil {
		panic(err)
	}
	return d
}

type fixture struct {
	zone    *lab.Zone
	learner *fakeLearner
	fwd     *Forwarder
	addr    netip.AddrPort // the forwarder's UDP and TCP address
}

var (
	wildAddr  = netip.MustParseAddr("203.0.113.70")
	otherAddr = netip.MustParseAddr("203.0.113.71")
	spoofAddr = netip.MustParseAddr("203.0.113.72")
)

func newFixture(t *testing.T, max int, clients ...netip.Prefix) *fixture {
	t.Helper()
	z := &lab.Zone{}
	z.SetTTL(60)
	z.Set("phone.wild.example", wildAddr)
	z.Set("other.example", otherAddr)
	z.SetCNAME("alias.wild.example", "edge.cdn.example")
	z.Set("edge.cdn.example", wildAddr, netip.MustParseAddr("2001:db8:cafe::70"))
	up, stop, err := lab.ServeZone(netip.MustParseAddrPort("127.0.0.1:0"), z)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	if len(clients) == 0 {
		clients = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	l := newFake(max)
	f, err := New(Config{
		Clients: clients, Upstreams: []netip.AddrPort{up},
		Matcher: firewall.NewMatcher([]firewall.LearnRule{
			{Dest: dest("*.wild.example"), Ports: ports("udp/5060", "tcp/80")},
			{Dest: dest("sbc.example.net"), Ports: ports("udp/5060")},
		}),
		TTLFloor: 5 * time.Second, TTLMax: time.Hour, Max: max,
	}, l)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	ln, err := net.Listen("tcp", bound.String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, []net.PacketConn{pc}, []net.Listener{ln}) }()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{zone: z, learner: l, fwd: f, addr: bound}
}

func (fx *fixture) ask(t *testing.T, proto, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
	// The server needs a moment to start accepting; retry only on a transport error.
	var resp *dns.Msg
	var err error
	for i := 0; i < 20; i++ {
		if resp, _, err = c.Exchange(m, fx.addr.String()); err == nil {
			return resp
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("ask %s: %v", name, err)
	return nil
}

// When the phone holds the answer, the address is learned already, with the ports
// of the wildcard entry and a timeout of max(TTL, floor).
func TestLearnsBeforeAnswering(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			fx := newFixture(t, 64)
			resp := fx.ask(t, proto, "phone.wild.example", dns.TypeA)
			if got := lab.AnswerAddrs(resp); !slices.Equal(got, []netip.Addr{wildAddr}) {
				t.Fatalf("answer %v", got)
			}
			l, ok := fx.learner.get(wildAddr)
			if !ok {
				t.Fatalf("%s not learned by the time the answer arrived", wildAddr)
			}
			if fmt.Sprint(l.Ports) != "[tcp/80 udp/5060]" || !slices.Equal(l.Names, []string{"phone.wild.example"}) {
				t.Errorf("learned %+v", l)
			}
			if l.Timeout < 55*time.Second || l.Timeout > 60*time.Second {
				t.Errorf("timeout %v, want the TTL (60 s, above the floor)", l.Timeout)
			}
		})
	}
}

func TestOtherNamesAreNotLearned(t *testing.T) {
	fx := newFixture(t, 64)
	resp := fx.ask(t, "udp", "other.example", dns.TypeA)
	if got := lab.AnswerAddrs(resp); !slices.Equal(got, []netip.Addr{otherAddr}) {
		t.Fatalf("answer %v: other names must still be answered", got)
	}
	// The apex of a wildcard is not below it.
	fx.zone.Set("wild.example", otherAddr)
	fx.ask(t, "udp", "wild.example", dns.TypeA)
	if got, _ := fx.learner.Read(); len(got) != 0 || fx.learner.updates != 0 {
		t.Errorf("learned %+v for names not on the allowlist", got)
	}
	if fx.ask(t, "udp", "nx.example", dns.TypeA).Rcode != dns.RcodeNameError {
		t.Errorf("NXDOMAIN not passed on")
	}
}

// A CNAME chain: the phone asked an allowlisted name; the addresses at the end of
// the chain are learned (both families, the TTL floor applied).
func TestCNAMEChain(t *testing.T) {
	fx := newFixture(t, 64)
	fx.zone.SetTTL(1) // below the 5 s floor
	fx.ask(t, "udp", "alias.wild.example", dns.TypeA)
	fx.ask(t, "udp", "alias.wild.example", dns.TypeAAAA)
	for _, a := range []netip.Addr{wildAddr, netip.MustParseAddr("2001:db8:cafe::70")} {
		l, ok := fx.learner.get(a)
		if !ok {
			t.Errorf("%s not learned through the CNAME chain", a)
			continue
		}
		if l.Timeout < 4*time.Second || l.Timeout > 5*time.Second {
			t.Errorf("%s timeout %v, want the 5 s floor", a, l.Timeout)
		}
	}
}

// Replies that do not answer the outstanding query are discarded, whatever they say.
func TestSpoofedRepliesDiscarded(t *testing.T) {
	// Both ways of waiting for the upstream: a blocking receive, and the runtime's
	// poller when other queries wait too (here: always).
	for _, wait := range []string{"blocking", "poller"} {
		t.Run(wait, func(t *testing.T) {
			fx := newFixture(t, 64)
			if wait == "poller" {
				fx.fwd.maxBlocking = 0
			}
			testSpoofedReplies(t, fx)
		})
	}
	testUnsolicitedResponse(t)
}

func testSpoofedReplies(t *testing.T, fx *fixture) {
	fx.zone.SetBeforeAnswer(func(w dns.ResponseWriter, req *dns.Msg) {
		if _, udp := w.RemoteAddr().(*net.UDPAddr); !udp {
			return
		}
		bad := func(id uint16, name string) {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			m.Id, m.Response = id, true
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: spoofAddr.AsSlice()}}
			w.WriteMsg(m)
		}
		bad(req.Id+1, req.Question[0].Name) // wrong ID
		bad(req.Id, "evil.wild.example")    // right ID, another question
	})
	resp := fx.ask(t, "udp", "phone.wild.example", dns.TypeA)
	if got := lab.AnswerAddrs(resp); !slices.Equal(got, []netip.Addr{wildAddr}) {
		t.Fatalf("answer %v, want the real one", got)
	}
	if d := fx.fwd.Stats().Discarded; d != 2 {
		t.Errorf("discarded %d replies, want 2", d)
	}
	if _, ok := fx.learner.get(spoofAddr); ok {
		t.Errorf("learned %s from a reply that did not match the query", spoofAddr)
	}
	if _, ok := fx.learner.get(wildAddr); !ok {
		t.Errorf("the real answer was not learned")
	}
}

func testUnsolicitedResponse(t *testing.T) {
	// A response sent to the forwarder's own port (no query outstanding there)
	// gets no answer and teaches nothing.
	fx2 := newFixture(t, 64)
	c, err := net.Dial("udp", fx2.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion("phone.wild.example.", dns.TypeA)
	m.Response = true
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "phone.wild.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: spoofAddr.AsSlice()}}
	b, _ := m.Pack()
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Errorf("the forwarder answered an unsolicited response (%d bytes)", n)
	}
	// A real query afterwards proves the forwarder was listening all along.
	fx2.ask(t, "udp", "other.example", dns.TypeA)
	if got, _ := fx2.learner.Read(); len(got) != 0 {
		t.Errorf("learned %+v from an unsolicited response", got)
	}
}

// Under a flood of distinct answers the learned elements never exceed the cap;
// the oldest are evicted and counted.
func TestCapUnderFlood(t *testing.T) {
	const max = 16 // elements; each address is 2 (udp/5060, tcp/80)
	fx := newFixture(t, max)
	fx.zone.Synth("flood.wild.example", func(name string) netip.Addr {
		var n int
		fmt.Sscanf(name, "h%d.", &n)
		return netip.AddrFrom4([4]byte{198, 51, 100, byte(n)})
	})
	const names = 100
	for i := 1; i <= names; i++ {
		fx.ask(t, "udp", fmt.Sprintf("h%d.flood.wild.example", i), dns.TypeA)
	}
	if fx.learner.maxSeen > max {
		t.Errorf("the learned set held %d elements, cap %d", fx.learner.maxSeen, max)
	}
	st := fx.fwd.Stats()
	if st.Learned != names || st.Evicted != names-max/2 || st.LearnErrors != 0 {
		t.Errorf("stats %+v: want %d learned, %d evicted, no errors", st, names, names-max/2)
	}
	// The newest survive.
	for i := names - max/2 + 1; i <= names; i++ {
		if _, ok := fx.learner.get(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})); !ok {
			t.Errorf("h%d (one of the newest) was evicted", i)
		}
	}
}

// A repeated answer with most of its timeout left costs no kernel write.
func TestRepeatedAnswerNoWrite(t *testing.T) {
	fx := newFixture(t, 64)
	fx.ask(t, "udp", "phone.wild.example", dns.TypeA)
	fx.ask(t, "udp", "phone.wild.example", dns.TypeA)
	if fx.learner.updates != 1 {
		t.Errorf("%d kernel updates for the same answer twice, want 1", fx.learner.updates)
	}
	// A second allowlisted name with other ports for the same address widens it.
	fx.zone.Set("sbc.example.net", wildAddr)
	fx.ask(t, "udp", "sbc.example.net", dns.TypeA)
	l, _ := fx.learner.get(wildAddr)
	if fx.learner.updates != 2 || !strings.Contains(strings.Join(l.Names, " "), "sbc.example.net") {
		t.Errorf("updates %d, learned %+v", fx.learner.updates, l)
	}
}

func TestRefusesOtherClients(t *testing.T) {
	fx := newFixture(t, 64, netip.MustParsePrefix("192.0.2.0/25"))
	if rc := fx.ask(t, "udp", "phone.wild.example", dns.TypeA).Rcode; rc != dns.RcodeRefused {
		t.Errorf("rcode %s for a client outside the VoIP network, want REFUSED", dns.RcodeToString[rc])
	}
	if got, _ := fx.learner.Read(); len(got) != 0 {
		t.Errorf("learned %+v for a refused client", got)
	}
}

// Repeated questions are answered from the cache for the TTL of the answer, with
// the TTL counted down and the question as the phone asked it; an allowlisted
// name answered from the cache is learned again if the kernel lost it.
func TestCacheAnswersRepeats(t *testing.T) {
	fx := newFixture(t, 64)
	var upstream atomic.Int32
	fx.zone.SetBeforeAnswer(func(dns.ResponseWriter, *dns.Msg) { upstream.Add(1) })
	first := fx.ask(t, "udp", "other.example", dns.TypeA)
	time.Sleep(1100 * time.Millisecond)
	for _, c := range []struct{ proto, name string }{{"udp", "other.example"}, {"tcp", "other.example"}, {"udp", "OTHER.Example"}} {
		resp := fx.ask(t, c.proto, c.name, dns.TypeA)
		if got := lab.AnswerAddrs(resp); !slices.Equal(got, []netip.Addr{otherAddr}) {
			t.Errorf("%s %s: answer %v", c.proto, c.name, got)
		}
		if q := resp.Question[0].Name; q != dns.Fqdn(c.name) {
			t.Errorf("%s %s: question %q in the answer", c.proto, c.name, q)
		}
		if got, was := resp.Answer[0].Header().Ttl, first.Answer[0].Header().Ttl; got >= was || got+3 < was {
			t.Errorf("%s %s: TTL %d after about a second, first answer %d", c.proto, c.name, got, was)
		}
	}
	if n := upstream.Load(); n != 1 {
		t.Errorf("the upstream was asked %d times, want once", n)
	}
	if n := fx.fwd.Stats().Cached; n != 3 {
		t.Errorf("%d answers from the cache, want 3", n)
	}

	fx.ask(t, "udp", "phone.wild.example", dns.TypeA)
	time.Sleep(20 * time.Millisecond) // a UDP answer is cached just after it went out
	// The kernel lost the address (the cap evicted it, say): a cached answer puts it back.
	fx.fwd.mu.Lock()
	delete(fx.fwd.entries, wildAddr)
	fx.fwd.elems = [2]int{}
	fx.fwd.mu.Unlock()
	fx.learner.mu.Lock()
	delete(fx.learner.have, wildAddr)
	fx.learner.mu.Unlock()
	before := upstream.Load()
	fx.ask(t, "udp", "phone.wild.example", dns.TypeA)
	if upstream.Load() != before {
		t.Error("the upstream was asked again for a cached name")
	}
	if _, ok := fx.learner.get(wildAddr); !ok {
		t.Error("a cached answer went out without its address learned")
	}

	// After the TTL the upstream is asked again.
	fx.zone.SetTTL(1)
	fx.zone.Set("sbc.example.net", otherAddr)
	if got := lab.AnswerAddrs(fx.ask(t, "udp", "sbc.example.net", dns.TypeA)); len(got) != 1 {
		t.Fatalf("sbc.example.net: %v", got)
	}
	time.Sleep(20 * time.Millisecond)
	before = upstream.Load()
	fx.ask(t, "udp", "sbc.example.net", dns.TypeA)
	if upstream.Load() != before {
		t.Error("the upstream was asked again within the TTL")
	}
	time.Sleep(1100 * time.Millisecond)
	before = upstream.Load()
	fx.ask(t, "udp", "sbc.example.net", dns.TypeA)
	if upstream.Load() != before+1 {
		t.Error("an expired answer came from the cache")
	}
}
