package dnsfwd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/voipgw/voipgw/dnsmsg"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/lab"
)

// The forwarder's own server (serve.go) and the answers it builds, read by
// miekg/dns as a phone's resolver would.

// exchangeRaw sends b to the forwarder over UDP and returns the answer, or nil if
// none came within wait.
func exchangeRaw(t *testing.T, to netip.AddrPort, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestRejectsWhatItDoesNotServe(t *testing.T) {
	fx := newFixture(t, 64)
	fx.ask(t, "udp", "other.example", dns.TypeA) // the server is up
	q := new(dns.Msg)
	q.SetQuestion("other.example.", dns.TypeA)
	q.Id = 0x4242
	good, _ := q.Pack()

	status := q.Copy()
	status.Opcode = dns.OpcodeStatus
	statusB, _ := status.Pack()
	notify := q.Copy()
	notify.Opcode = dns.OpcodeNotify
	notifyB, _ := notify.Pack()
	two := q.Copy()
	two.Question = append(two.Question, dns.Question{Name: "x.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	twoB, _ := two.Pack()
	cut := slices.Clone(good[:len(good)-3]) // the question's type and class cut short
	loop := slices.Clone(good[:12])
	loop = append(loop, 0xc0, 12, 0, 1, 0, 1) // a name pointing at itself

	for _, c := range []struct {
		name  string
		b     []byte
		rcode int // -1: no answer at all
	}{
		{"runt", good[:7], -1},
		{"a response", func() []byte { r := q.Copy(); r.Response = true; b, _ := r.Pack(); return b }(), -1},
		{"opcode STATUS", statusB, dns.RcodeNotImplemented},
		{"NOTIFY", notifyB, dns.RcodeNotImplemented},
		{"two questions", twoB, dns.RcodeFormatError},
		{"question cut short", cut, dns.RcodeFormatError},
		{"pointer loop", loop, dns.RcodeFormatError},
	} {
		t.Run(c.name, func(t *testing.T) {
			ans := exchangeRaw(t, fx.addr, c.b, 300*time.Millisecond)
			if c.rcode < 0 {
				if ans != nil {
					t.Fatalf("answered %x", ans)
				}
				return
			}
			m := new(dns.Msg)
			if err := m.Unpack(ans); err != nil {
				t.Fatalf("answer %x: %v", ans, err)
			}
			if m.Id != 0x4242 || !m.Response || m.Rcode != c.rcode || len(m.Answer) != 0 {
				t.Errorf("answer %v, want rcode %s", m, dns.RcodeToString[c.rcode])
			}
		})
	}
	if st := fx.fwd.Stats(); st.Queries != 1 || fx.zone.Queries.Load() != 1 {
		t.Errorf("stats %+v, upstream asked %d times: only the first query is one", st, fx.zone.Queries.Load())
	}
}

// An answer larger than the phone takes over UDP is cut to fit, with TC set (the
// OPT kept: dnsmsg's tests); the phone then asks over TCP and gets it whole. Every address is
// learned (from the whole answer) before the truncated one goes out.
func TestTruncatesForThePhone(t *testing.T) {
	fx := newFixture(t, 1024)
	var addrs []netip.Addr
	for i := 1; i <= 60; i++ {
		addrs = append(addrs, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	fx.zone.Set("big.wild.example", addrs...)
	var mu sync.Mutex
	var seenOPT []*dns.OPT
	fx.zone.SetBeforeAnswer(func(_ dns.ResponseWriter, req *dns.Msg) {
		mu.Lock()
		seenOPT = append(seenOPT, req.IsEdns0())
		mu.Unlock()
	})
	// The answer's size on the wire (miekg's Len() is the uncompressed size).
	ask := func(edns uint16) (*dns.Msg, int) {
		m := new(dns.Msg)
		m.SetQuestion("big.wild.example.", dns.TypeA)
		if edns > 0 {
			m.SetEdns0(edns, true)
		}
		b, _ := m.Pack()
		raw := exchangeRaw(t, fx.addr, b, 3*time.Second)
		resp := new(dns.Msg)
		if err := resp.Unpack(raw); err != nil {
			t.Fatalf("answer %x: %v", raw, err)
		}
		return resp, len(raw)
	}
	small, n := ask(0)
	if !small.Truncated || len(small.Answer) == 0 || len(small.Answer) >= 60 || n > 512 {
		t.Errorf("no EDNS: TC %v, %d answers, %d bytes; want a truncated answer within 512", small.Truncated, len(small.Answer), n)
	}
	for _, a := range addrs {
		if _, ok := fx.learner.get(a); !ok {
			t.Fatalf("%s not learned from the whole answer", a)
		}
	}
	mid, n := ask(700)
	if !mid.Truncated || n > 700 || len(mid.Answer) <= len(small.Answer) {
		t.Errorf("EDNS 700: TC %v, %d bytes, %d answers", mid.Truncated, n, len(mid.Answer))
	}
	full, _ := ask(4096)
	if full.Truncated || len(full.Answer) != 60 {
		t.Errorf("EDNS 4096: TC %v, %d answers", full.Truncated, len(full.Answer))
	}
	if got := fx.ask(t, "tcp", "big.wild.example", dns.TypeA); len(got.Answer) != 60 || got.Truncated {
		t.Errorf("TCP: TC %v, %d answers", got.Truncated, len(got.Answer))
	}
	// The phone's EDNS0 went upstream as it sent it.
	mu.Lock()
	defer mu.Unlock()
	if len(seenOPT) == 0 || seenOPT[0] != nil || !slices.ContainsFunc(seenOPT, func(o *dns.OPT) bool { return o != nil && o.UDPSize() == 700 && o.Do() }) {
		t.Errorf("upstream saw OPT %v", seenOPT)
	}
}

// An upstream that truncates over UDP: the forwarder asks it again over TCP and
// learns every address; the phone gets the answer truncated to what it takes.
func TestUpstreamTruncatedLearnsOverTCP(t *testing.T) {
	var addrs []netip.Addr
	full := func(req *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, a := range addrs {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: a.AsSlice()})
		}
		return m
	}
	for i := 1; i <= 40; i++ {
		addrs = append(addrs, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := full(req)
		m.Answer = m.Answer[:1]
		m.Truncated = true
		w.WriteMsg(m)
	})}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { w.WriteMsg(full(req)) })}
	for _, s := range []*dns.Server{udp, tcp} {
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
	l := newFake(1024)
	f, err := New(Config{
		Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort(pc.LocalAddr().String())},
		Matcher:  firewall.NewMatcher([]firewall.LearnRule{{Dest: dest("*.wild.example"), Ports: ports("udp/5060")}}),
		TTLFloor: 5 * time.Second, TTLMax: time.Hour, Max: 1024,
	}, l)
	if err != nil {
		t.Fatal(err)
	}
	fpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, []net.PacketConn{fpc}, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(50 * time.Millisecond) // the upstream's servers start
	m := new(dns.Msg)
	m.SetQuestion("many.wild.example.", dns.TypeA)
	b, _ := m.Pack()
	raw := exchangeRaw(t, netip.MustParseAddrPort(fpc.LocalAddr().String()), b, 3*time.Second)
	resp := new(dns.Msg)
	if err := resp.Unpack(raw); err != nil {
		t.Fatalf("answer %x: %v", raw, err)
	}
	if !resp.Truncated || len(resp.Answer) == 0 || len(raw) > 512 {
		t.Errorf("phone's answer: TC %v, %d answers, %d bytes", resp.Truncated, len(resp.Answer), len(raw))
	}
	for _, a := range addrs {
		if _, ok := l.get(a); !ok {
			t.Fatalf("%s not learned: the whole answer was not fetched over TCP", a)
		}
	}
	if f.Stats().Cached != 0 {
		t.Error("a truncated answer was cached")
	}
}

// A TCP connection carries query after query; the server stops with a client
// connected and idle.
func TestTCPConnection(t *testing.T) {
	fx := newFixture(t, 64)
	fx.ask(t, "tcp", "other.example", dns.TypeA) // up
	co, err := dns.Dial("tcp", fx.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	for i, name := range []string{"other.example.", "phone.wild.example.", "nx.example."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		co.SetDeadline(time.Now().Add(3 * time.Second))
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("query %d on the connection: %v", i, err)
		}
		if r.Id != m.Id || r.Question[0].Name != name {
			t.Errorf("query %d: answer %v", i, r)
		}
	}
	if _, ok := fx.learner.get(wildAddr); !ok {
		t.Error("not learned over TCP")
	}
}

func TestServeStopsWithIdleTCPClient(t *testing.T) {
	z := &lab.Zone{}
	up, stop, err := lab.ServeZone(netip.MustParseAddrPort("127.0.0.1:0"), z)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveForwarder(t, up, false, ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- s.stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return with an idle client connected")
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the idle connection was left open")
	}
}

// FuzzHandle: whatever a phone sends, the forwarder neither panics nor answers
// with something that does not parse; a response or a runt gets no answer.
func FuzzHandle(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("Phone.Wild.example.", dns.TypeA)
	q.SetEdns0(1232, true)
	seed, _ := q.Pack()
	f.Add(seed)
	q2 := new(dns.Msg)
	q2.SetQuestion("other.example.", dns.TypeAAAA)
	seed2, _ := q2.Pack()
	f.Add(seed2)
	f.Add([]byte{0, 1, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	// No upstream listens: a query that gets that far fails fast (port unreachable).
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	up := netip.MustParseAddrPort(dead.LocalAddr().String())
	dead.Close()
	fwd, err := New(Config{
		Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Upstreams: []netip.AddrPort{up},
		Matcher:  firewall.NewMatcher([]firewall.LearnRule{{Dest: dest("*.wild.example"), Ports: ports("udp/5060")}}),
		TTLFloor: time.Second, TTLMax: time.Hour, Max: 64, Timeout: 50 * time.Millisecond,
	}, newFake(64))
	if err != nil {
		f.Fatal(err)
	}
	// A cached answer, so the cache's path (ID, TTLs, the phone's spelling) is fuzzed too.
	cq := new(dns.Msg)
	cq.SetQuestion("phone.wild.example.", dns.TypeA)
	creq, _ := cq.Pack()
	ans := new(dns.Msg)
	ans.SetReply(cq)
	ans.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "phone.wild.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: wildAddr.AsSlice()}}
	araw, _ := ans.Pack()
	m, err := dnsmsg.Parse(creq)
	if err != nil {
		f.Fatal(err)
	}
	fwd.cache.put(&request{raw: creq, m: m, q: m.Question[0], udpSize: 512}, araw, time.Now())

	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > udpReadSize {
			b = b[:udpReadSize]
		}
		// UDP semantics (truncation to the phone's size), the answer captured.
		c := &captureConn{}
		w := &replyWriter{remote: netip.MustParseAddrPort("127.0.0.1:5353"), conn: c}
		fwd.handle(w, slices.Clone(b))
		if len(c.msgs) == 0 {
			return
		}
		if len(c.msgs) > 1 {
			t.Fatalf("%d answers to %x", len(c.msgs), b)
		}
		out := c.msgs[0][2:] // after the length replyWriter puts first on a conn
		if len(b) < 12 || b[2]&0x80 != 0 {
			t.Fatalf("answered a runt or a response: %x", b)
		}
		if _, err := dnsmsg.Parse(out); err != nil {
			t.Fatalf("answer %x to %x does not parse: %v", out, b, err)
		}
		if len(out) > 4096 {
			t.Fatalf("a UDP answer of %d bytes", len(out))
		}
	})
}

// captureConn keeps what is written to it.
type captureConn struct {
	net.Conn
	msgs [][]byte
}

func (c *captureConn) Write(b []byte) (int, error) {
	c.msgs = append(c.msgs, slices.Clone(b))
	return len(b), nil
}

func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

var dnsmsgParse = dnsmsg.Parse

// workersIn counts goroutines that are in udpWorker.
func workersIn() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "dnsfwd.(*Forwarder).udpWorker(")
}

// Datagrams go to waiting workers: a burst of concurrent queries is answered,
// afterwards at most maxIdleWorkers wait for more, and none outlives Serve.
func TestUDPWorkers(t *testing.T) {
	z := &lab.Zone{}
	z.Set("other.example", otherAddr)
	up, stop, err := lab.ServeZone(netip.MustParseAddrPort("127.0.0.1:0"), z)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	s := serveForwarder(t, up, true)
	addr := s.addr

	const burst = 32
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("n%d.other.example.", i), dns.TypeA) // misses: each one waits for the upstream
			c := &dns.Client{Timeout: 3 * time.Second}
			if _, _, err := c.Exchange(m, addr.String()); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("query: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // the workers of the burst finish their answers
	if n := workersIn(); n < 1 || n > maxIdleWorkers {
		t.Errorf("%d workers wait after the burst, want 1..%d", n, maxIdleWorkers)
	}
	if err := s.stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := workersIn(); n != 0 {
		t.Errorf("%d workers are left after Serve returned", n)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// Each miss goes upstream from a new socket (a new source port: RFC 5452), and
// every one is closed. (A variant that opened the next socket ahead of its query,
// after the previous answer, was measured and not kept: BENCHMARKS.md §5.)
func TestUpstreamSocketPerQuery(t *testing.T) {
	var mu sync.Mutex
	var ports []uint16
	upc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: upc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		ports = append(ports, uint16(w.RemoteAddr().(*net.UDPAddr).Port))
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IP(otherAddr.AsSlice())})
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	up := upc.LocalAddr().(*net.UDPAddr).AddrPort()

	before := openFDs(t)
	s := serveForwarder(t, up, true)
	addr := s.addr

	const n = 20
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("q%d.example.", i), dns.TypeA) // a miss each
		c := &dns.Client{Timeout: 3 * time.Second}
		if _, _, err := c.Exchange(m, addr.String()); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	if err := s.stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ports) != n {
		t.Fatalf("the upstream was asked %d times, want %d", len(ports), n)
	}
	seen := map[uint16]bool{}
	for _, p := range ports {
		seen[p] = true
	}
	// The kernel picks ephemeral ports at random; a repeat within 20 is possible
	// but rare (and a reused socket would repeat every time).
	if len(seen) < n-2 {
		t.Errorf("%d source ports for %d queries: %v", len(seen), n, ports)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d file descriptors open after Serve returned, %d before: sockets are left open", after, before)
	}
}

// served is a forwarder for 127.0.0.0/8 asking up, serving until stop.
type served struct {
	addr netip.AddrPort // its UDP socket (zero without one)
	stop func() error   // ends Serve and returns what it returned; also at the test's end
}

// serveForwarder serves a new forwarder on a UDP socket of its own (if udp) and lns.
func serveForwarder(t *testing.T, up netip.AddrPort, udp bool, lns ...net.Listener) served {
	t.Helper()
	f, err := New(Config{Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Upstreams: []netip.AddrPort{up}, Max: 8}, newFake(8))
	if err != nil {
		t.Fatal(err)
	}
	var s served
	var pcs []net.PacketConn
	if udp {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pcs, s.addr = []net.PacketConn{pc}, pc.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, pcs, lns) }()
	var once sync.Once
	var serr error
	s.stop = func() error { once.Do(func() { cancel(); serr = <-done }); return serr }
	t.Cleanup(func() { s.stop() })
	return s
}
