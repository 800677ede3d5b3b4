// Package dnsfwd is the DNS forwarder of the VoIP network. Phones ask it (DHCP
// hands out the gateway as DNS server, and the firewall redirects DNS to any other
// resolver to it); it asks the upstream resolvers and, for A/AAAA answers to names
// on the allowlist (exact host names or wildcards), puts the answered addresses
// into the table's learned sets with the ports of the matching allowlist entries
// BEFORE it passes the answer on, so the phone's first packet to the address is
// never dropped. Other names are answered normally and never widen the allowlist.
//
// It is built on miekg/dns. Upstream replies are accepted only on the connected
// socket of the query, with the query's random ID and question; anything else is
// discarded and counted.
package dnsfwd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/firewall"
)

// Learner is what the forwarder needs of the firewall (firewall.Learner).
type Learner interface {
	Update(changes []firewall.Change) error
	Read() ([]firewall.Learned, error)
}

// Config of one forwarder.
type Config struct {
	Listen      []netip.Addr     // the VoIP gateway addresses
	Port        uint16           // 53; tests use others
	Clients     []netip.Prefix   // who may ask: the VoIP subnets; others are refused
	Upstreams   []netip.AddrPort // asked in order, the last one that answered first
	Matcher     *firewall.Matcher
	StaticNames []string // allowlisted host names re-resolved on their TTL
	TTLFloor    time.Duration
	TTLMax      time.Duration
	Max         int           // elements per learned set (the set's size)
	Timeout     time.Duration // per upstream attempt; default 2 s
	Log         *slog.Logger
}

// Stats are the forwarder's counters (published for `voipgw status`).
type Stats struct {
	Queries        uint64 `json:"queries"`
	Answered       uint64 `json:"answered"`
	Refused        uint64 `json:"refused"`         // clients outside the VoIP network
	UpstreamErrors uint64 `json:"upstream_errors"` // no upstream answered: SERVFAIL
	Discarded      uint64 `json:"discarded"`       // replies that matched no outstanding query
	Learned        uint64 `json:"learned"`         // addresses added
	Refreshed      uint64 `json:"refreshed"`       // addresses whose timeout or ports were renewed
	Evicted        uint64 `json:"evicted"`         // oldest addresses removed to stay within the cap
	LearnErrors    uint64 `json:"learn_errors"`
	Resolved       uint64 `json:"static_resolved"` // static host names re-resolved
	Cached         uint64 `json:"cached"`          // answered from the cache (cache.go)
}

type counters struct {
	queries, answered, refused, upstreamErrors, discarded, learned, refreshed, evicted, learnErrors, resolved, cached atomic.Uint64
}

// Forwarder answers the phones' DNS queries and learns from the answers.
type Forwarder struct {
	cfg     Config
	learner Learner
	c       counters

	mu      sync.Mutex
	entries map[netip.Addr]*entry // what the kernel has, as far as we know
	elems   [2]int                // elements per family (0: v4, 1: v6)
	pruned  time.Time             // last walk for expired entries

	upMu    sync.Mutex
	upFirst int // index of the upstream that answered last

	waiting     atomic.Int32 // queries waiting for an upstream over UDP
	maxBlocking int32        // blockingAskers (tests: 0)
	cache       answerCache
}

type entry struct {
	l       firewall.Learned
	expires time.Time
	touched time.Time // last learned or refreshed: eviction takes the oldest
}

// graceful is how long after its computed expiry an entry is still assumed to be in
// the kernel: deleting an element that is gone only costs a retry, adding one that
// is still there would fail.
const grace = 2 * time.Second

// New makes a forwarder; it reads what the learned sets hold already (after a
// restart or a re-apply) so the cap and refreshes account for it.
func New(cfg Config, l Learner) (*Forwarder, error) {
	if cfg.Port == 0 {
		cfg.Port = 53
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Matcher == nil {
		cfg.Matcher = firewall.NewMatcher(nil)
	}
	if cfg.Max <= 0 {
		return nil, errors.New("dnsfwd: Max (the learned set size) must be positive")
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("dnsfwd: no upstream resolver")
	}
	f := &Forwarder{cfg: cfg, learner: l, entries: map[netip.Addr]*entry{}, maxBlocking: blockingAskers}
	have, err := l.Read()
	if err != nil {
		return nil, fmt.Errorf("read learned sets: %w", err)
	}
	now := time.Now()
	for _, h := range have {
		h := h
		f.entries[h.Addr] = &entry{l: h, expires: now.Add(h.Timeout), touched: now.Add(h.Timeout - cfg.TTLMax)}
		f.elems[fam(h.Addr)] += len(h.Elems())
	}
	return f, nil
}

func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// Stats returns a snapshot of the counters.
func (f *Forwarder) Stats() Stats {
	return Stats{Queries: f.c.queries.Load(), Answered: f.c.answered.Load(), Refused: f.c.refused.Load(),
		UpstreamErrors: f.c.upstreamErrors.Load(), Discarded: f.c.discarded.Load(), Learned: f.c.learned.Load(),
		Refreshed: f.c.refreshed.Load(), Evicted: f.c.evicted.Load(), LearnErrors: f.c.learnErrors.Load(), Resolved: f.c.resolved.Load(),
		Cached: f.c.cached.Load()}
}

// Entries returns the learned addresses as the forwarder believes them (time left in Timeout).
func (f *Forwarder) Entries() []firewall.Learned {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	var out []firewall.Learned
	for _, e := range f.entries {
		if left := e.expires.Sub(now); left > 0 {
			l := e.l
			l.Timeout = left
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b firewall.Learned) int { return a.Addr.Compare(b.Addr) })
	return out
}

// ErrPortInUse wraps a listen error when another server holds the port.
var ErrPortInUse = errors.New("port in use")

// Listen opens UDP and TCP sockets on every listen address. They are opened here,
// before Serve, so a port held by another server (dnsmasq) is one clear error.
func (f *Forwarder) Listen() ([]net.PacketConn, []net.Listener, error) {
	var pcs []net.PacketConn
	var lns []net.Listener
	closeAll := func() {
		for _, c := range pcs {
			c.Close()
		}
		for _, l := range lns {
			l.Close()
		}
	}
	// FREEBIND: a fresh IPv6 gateway address may still be tentative (DAD).
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) {
			if network == "udp6" || network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
			}
		})
		return serr
	}}
	for _, a := range f.cfg.Listen {
		addr := netip.AddrPortFrom(a, f.cfg.Port).String()
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err == nil {
			pcs = append(pcs, pc)
			var ln net.Listener
			ln, err = lc.Listen(context.Background(), "tcp", addr)
			if err == nil {
				lns = append(lns, ln)
			}
		}
		if err != nil {
			closeAll()
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, nil, fmt.Errorf("%w: %w: another DNS server (dnsmasq?) holds port %d on %s. Make it leave the VoIP interface alone "+
					"(OpenWrt: uci add_list dhcp.@dnsmasq[0].notinterface=<VoIP interface>; uci set dhcp.@dnsmasq[0].nonwildcard=1; "+
					"uci commit dhcp; service dnsmasq restart) or turn the forwarder off (voipgw.dns.forwarder='0': phones then lose wildcard destinations)",
					ErrPortInUse, err, f.cfg.Port, a)
			}
			return nil, nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
	}
	return pcs, lns, nil
}

// Serve answers on the sockets until ctx ends; it closes them.
func (f *Forwarder) Serve(ctx context.Context, pcs []net.PacketConn, lns []net.Listener) error {
	var servers []*dns.Server
	for _, pc := range pcs {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: f, UDPSize: dns.DefaultMsgSize})
	}
	for _, ln := range lns {
		servers = append(servers, &dns.Server{Listener: ln, Handler: f, ReadTimeout: 10 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }})
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dns server: %w", err)
	}
	for _, s := range servers {
		s.Shutdown()
	}
	return err
}

// Run listens, serves and re-resolves the static host names until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	pcs, lns, err := f.Listen()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); f.refreshStatic(ctx) }()
	err = f.Serve(ctx, pcs, lns)
	cancel()
	wg.Wait()
	return err
}

func (f *Forwarder) clientAllowed(a net.Addr) bool {
	var ap netip.AddrPort
	switch x := a.(type) {
	case *net.UDPAddr:
		ap = x.AddrPort()
	case *net.TCPAddr:
		ap = x.AddrPort()
	default:
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range f.cfg.Clients {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ServeDNS handles one query of a phone.
func (f *Forwarder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	f.c.queries.Add(1)
	if !f.clientAllowed(w.RemoteAddr()) {
		f.c.refused.Add(1)
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeRefused)
		w.WriteMsg(m)
		return
	}
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	tcp := false
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		tcp = true
	}
	if raw := f.cache.get(req, time.Now()); raw != nil && f.serveRaw(w, req, raw, tcp) {
		f.c.cached.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout*time.Duration(len(f.cfg.Upstreams))+time.Second)
	defer cancel()
	if !tcp && f.serveUDPFast(ctx, w, req) {
		return
	}
	resp, err := f.Exchange(ctx, req, tcp)
	if err != nil {
		f.c.upstreamErrors.Add(1)
		f.cfg.Log.Debug("dns: no upstream answered", "name", req.Question[0].Name, "err", err)
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	}
	// Learn first, answer second: the phone connects the moment it has the answer.
	f.learnFromAnswer(req.Question[0], resp)
	f.reply(w, req, resp, tcp)
}

// reply sends resp with the phone's ID, over UDP truncated to what the phone takes.
func (f *Forwarder) reply(w dns.ResponseWriter, req, resp *dns.Msg, tcp bool) {
	resp.Id = req.Id
	if !tcp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		resp.Truncate(size)
	}
	if err := w.WriteMsg(resp); err == nil {
		f.c.answered.Add(1)
	}
}

// serveUDPFast answers a UDP query with the upstream's reply as it came, only its
// ID set back to the phone's (serveRaw): no copy of the query, no dns.Msg of the
// reply unless its addresses are to be learned, no packing, and the upstream asked from a
// socket of its own that waits in a blocking receive instead of the runtime's
// poller (loopback: the poller's park and wake-up was a third of the added
// latency; BENCHMARKS.md). It returns false, having answered nothing, for what it
// leaves to the general path: a truncated reply (learned from over TCP), one that
// must be truncated for this phone, or no upstream answering.
func (f *Forwarder) serveUDPFast(ctx context.Context, w dns.ResponseWriter, req *dns.Msg) bool {
	qb := bufPool.Get().(*[]byte)
	defer bufPool.Put(qb)
	rb := bufPool.Get().(*[]byte)
	defer bufPool.Put(rb)
	phoneID := req.Id
	req.Id = dns.Id()
	query, err := req.PackBuffer(*qb)
	upID := req.Id
	req.Id = phoneID
	if err != nil {
		return false
	}
	f.upMu.Lock()
	first := f.upFirst
	f.upMu.Unlock()
	n := len(f.cfg.Upstreams)
	for i := 0; i < n; i++ {
		idx := (first + i) % n
		reply, err := f.askUDP(ctx, query, upID, req.Question[0], f.cfg.Upstreams[idx], *rb)
		if err != nil {
			continue // the general path tries them all again and reports
		}
		if idx != first {
			f.upMu.Lock()
			f.upFirst = idx
			f.upMu.Unlock()
		}
		if reply[2]&0x02 != 0 { // TC set: learned from over TCP on the general path
			return false
		}
		binary.BigEndian.PutUint16(reply, phoneID)
		if !f.serveRaw(w, req, reply, false) {
			return false
		}
		// Cached after the phone has its answer: the copy is not on its time.
		f.cache.put(req, reply, time.Now())
		return true
	}
	return false
}

// blockingAskers: a query waits for its upstream in a blocking receive only when
// at most this many are waiting (itself included), else through the runtime's
// poller (as all queries did before). A blocking receive saves the poller's park
// and wake-up, a good part of a lone query's added latency on loopback, but holds
// an OS thread and, until the runtime takes it back, a P: queries in parallel go
// through the poller, and a flood towards a slow upstream never becomes a thread
// per query. (Throughput with 1 or 4 blocking slots or none was the same within
// this machine's noise: BENCHMARKS.md.)
const blockingAskers = 1

// serveRaw answers req with raw, an upstream's answer with req's ID, learning its
// addresses first if the name is allowlisted. It returns false, having answered
// nothing, if raw is longer than a UDP phone takes (the general path truncates).
func (f *Forwarder) serveRaw(w dns.ResponseWriter, req *dns.Msg, raw []byte, tcp bool) bool {
	if !tcp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		if len(raw) > size {
			return false
		}
	}
	q := req.Question[0]
	if raw[3]&0x0f == dns.RcodeSuccess && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA) && len(f.cfg.Matcher.Ports(q.Name)) > 0 {
		resp := new(dns.Msg)
		if resp.Unpack(raw) != nil {
			return false
		}
		f.learnFromAnswer(q, resp)
	}
	if _, err := w.Write(raw); err == nil {
		f.c.answered.Add(1)
	}
	return true
}

// askUDP sends the packed query from a fresh connected socket (a new random source
// port per query, as before) and returns the first datagram that answers it (in rb).
func (f *Forwarder) askUDP(ctx context.Context, query []byte, id uint16, q dns.Question, up netip.AddrPort, rb []byte) ([]byte, error) {
	deadline := time.Now().Add(f.cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	n := f.waiting.Add(1)
	defer f.waiting.Add(-1)
	if n <= f.maxBlocking {
		return f.askUDPBlocking(deadline, query, id, q, up, rb)
	}
	return f.askUDPPoller(ctx, deadline, query, id, q, up, rb)
}

// askUDPPoller is askUDP through the runtime's poller.
func (f *Forwarder) askUDPPoller(ctx context.Context, deadline time.Time, query []byte, id uint16, q dns.Question, up netip.AddrPort, rb []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write(query); err != nil {
		return nil, err
	}
	for {
		n, err := c.Read(rb)
		if err != nil {
			return nil, err
		}
		if !answers(rb[:n], id, q) {
			f.c.discarded.Add(1) // see askUDPBlocking
			continue
		}
		return rb[:n], nil
	}
}

// askUDPBlocking is askUDP on a socket of its own in blocking mode.
func (f *Forwarder) askUDPBlocking(deadline time.Time, query []byte, id uint16, q dns.Question, up netip.AddrPort, rb []byte) ([]byte, error) {
	dom, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(up.Port()), Addr: up.Addr().Unmap().As4()})
	if up.Addr().Is6() && !up.Addr().Is4In6() {
		dom, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(up.Port()), Addr: up.Addr().As16()}
	}
	fd, err := unix.Socket(dom, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	// Connected: the kernel only hands it datagrams from this upstream's address and port.
	if err := unix.Connect(fd, sa); err != nil {
		return nil, fmt.Errorf("connect %s: %w", up, err)
	}
	if _, err := unix.Write(fd, query); err != nil {
		return nil, fmt.Errorf("send to %s: %w", up, err)
	}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%s: %w", up, os.ErrDeadlineExceeded)
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, err := unix.Read(fd, rb)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return nil, fmt.Errorf("%s: %w", up, os.ErrDeadlineExceeded)
		case err != nil:
			return nil, fmt.Errorf("receive from %s: %w", up, err)
		}
		if !answers(rb[:n], id, q) {
			// Not the answer to this query (spoofed, or a late reply to an
			// earlier one): discard and keep waiting for the real one.
			f.c.discarded.Add(1)
			continue
		}
		return rb[:n], nil
	}
}

// answers is matches on the wire: a response with the query's ID, opcode QUERY and
// the same single question.
func answers(b []byte, id uint16, q dns.Question) bool {
	if len(b) < 12 || binary.BigEndian.Uint16(b) != id || b[2]&0x80 == 0 || (b[2]>>3)&0x0f != dns.OpcodeQuery ||
		binary.BigEndian.Uint16(b[4:]) != 1 {
		return false
	}
	name, off, err := dns.UnpackDomainName(b, 12)
	if err != nil || off+4 > len(b) {
		return false
	}
	return binary.BigEndian.Uint16(b[off:]) == q.Qtype && binary.BigEndian.Uint16(b[off+2:]) == q.Qclass &&
		dns.CanonicalName(name) == dns.CanonicalName(q.Name)
}

// Exchange asks the upstreams, starting with the one that answered last.
func (f *Forwarder) Exchange(ctx context.Context, req *dns.Msg, tcp bool) (*dns.Msg, error) {
	f.upMu.Lock()
	first := f.upFirst
	f.upMu.Unlock()
	var errs []error
	n := len(f.cfg.Upstreams)
	for i := 0; i < n; i++ {
		idx := (first + i) % n
		up := f.cfg.Upstreams[idx]
		q := req.Copy()
		q.Id = dns.Id()
		var resp *dns.Msg
		var err error
		if tcp {
			resp, err = f.exchangeTCP(ctx, q, up)
		} else {
			resp, err = f.exchangeUDP(ctx, q, up)
			if err == nil && resp.Truncated {
				// Learn from the whole answer, not its truncated part; the phone
				// still gets the truncated one and retries over TCP itself.
				if full, terr := f.exchangeTCP(ctx, q, up); terr == nil {
					full.Truncated = true
					resp = full
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", up, err))
			continue
		}
		if idx != first {
			f.upMu.Lock()
			f.upFirst = idx
			f.upMu.Unlock()
		}
		return resp, nil
	}
	return nil, errors.Join(errs...)
}

// matches reports whether resp answers q: a response, the same ID and question.
func matches(q, resp *dns.Msg) bool {
	if !resp.Response || resp.Id != q.Id || resp.Opcode != q.Opcode || len(resp.Question) != 1 {
		return false
	}
	a, b := q.Question[0], resp.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && dns.CanonicalName(a.Name) == dns.CanonicalName(b.Name)
}

func (f *Forwarder) exchangeUDP(ctx context.Context, q *dns.Msg, up netip.AddrPort) (*dns.Msg, error) {
	buf, err := q.Pack()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	// A connected socket on a random port: the kernel only hands it datagrams from
	// this upstream's address and port.
	c, err := d.DialContext(ctx, "udp", up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(f.cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.SetDeadline(deadline)
	if _, err := c.Write(buf); err != nil {
		return nil, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	rb := *bp
	for {
		n, err := c.Read(rb)
		if err != nil {
			return nil, err
		}
		resp := new(dns.Msg)
		if resp.Unpack(rb[:n]) != nil || !matches(q, resp) {
			// Not the answer to this query (spoofed, or a late reply to an
			// earlier one): discard and keep waiting for the real one.
			f.c.discarded.Add(1)
			continue
		}
		return resp, nil
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize); return &b }}

func (f *Forwarder) exchangeTCP(ctx context.Context, q *dns.Msg, up netip.AddrPort) (*dns.Msg, error) {
	c := &dns.Client{Net: "tcp", Timeout: f.cfg.Timeout}
	resp, _, err := c.ExchangeContext(ctx, q, up.String())
	if err != nil {
		if errors.Is(err, dns.ErrId) {
			f.c.discarded.Add(1)
		}
		return nil, err
	}
	if !matches(q, resp) {
		f.c.discarded.Add(1)
		return nil, errors.New("reply does not match the query")
	}
	return resp, nil
}

// answerAddrs follows the CNAME chain from the question's name and returns the
// addresses at its end with the smallest TTL seen along the chain.
func answerAddrs(q dns.Question, m *dns.Msg) ([]netip.Addr, time.Duration) {
	var ttl uint32
	first := true
	minTTL := func(t uint32) {
		if first || t < ttl {
			ttl, first = t, false
		}
	}
	target := dns.CanonicalName(q.Name)
	for hops := 0; hops < 16; hops++ {
		next := ""
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && dns.CanonicalName(c.Hdr.Name) == target {
				next = dns.CanonicalName(c.Target)
				minTTL(c.Hdr.Ttl)
				break
			}
		}
		if next == "" || next == target {
			break
		}
		target = next
	}
	var out []netip.Addr
	for _, rr := range m.Answer {
		if dns.CanonicalName(rr.Header().Name) != target || rr.Header().Class != dns.ClassINET {
			continue
		}
		switch a := rr.(type) {
		case *dns.A:
			if q.Qtype == dns.TypeA {
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					out = append(out, ip)
					minTTL(a.Hdr.Ttl)
				}
			}
		case *dns.AAAA:
			if q.Qtype == dns.TypeAAAA {
				if ip, ok := netip.AddrFromSlice(a.AAAA.To16()); ok && !ip.Is4In6() {
					out = append(out, ip)
					minTTL(a.Hdr.Ttl)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), time.Duration(ttl) * time.Second
}

func (f *Forwarder) learnFromAnswer(q dns.Question, resp *dns.Msg) {
	if resp.Rcode != dns.RcodeSuccess || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) {
		return
	}
	ports := f.cfg.Matcher.Ports(q.Name)
	if len(ports) == 0 {
		return // not on the allowlist: answered, never learned
	}
	addrs, ttl := answerAddrs(q, resp)
	if len(addrs) == 0 {
		return
	}
	if err := f.Learn(firewall.CanonicalName(q.Name), ports, addrs, ttl); err != nil {
		f.c.learnErrors.Add(1)
		f.cfg.Log.Error("dns: could not learn", "name", q.Name, "addrs", fmt.Sprint(addrs), "err", err)
	}
}

// Learn puts addrs into the learned sets for name with ports, for max(ttl, floor)
// capped at TTLMax. It returns once the kernel has them.
func (f *Forwarder) Learn(name string, ports []catalog.PortRange, addrs []netip.Addr, ttl time.Duration) error {
	timeout := min(max(ttl, f.cfg.TTLFloor), f.cfg.TTLMax)
	if timeout <= 0 {
		timeout = time.Minute
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	// Forget what has expired in the kernel by now (a walk over all entries, so at
	// most once a second, and always when the cap is in sight).
	if now.Sub(f.pruned) > time.Second || f.elems[0]+f.elems[1] >= f.cfg.Max {
		f.pruned = now
		for a, e := range f.entries {
			if now.After(e.expires.Add(grace)) {
				f.elems[fam(a)] -= len(e.l.Elems())
				delete(f.entries, a)
			}
		}
	}
	var changes []firewall.Change
	var added, refreshed int
	delta := [2]int{}
	type pending struct {
		a netip.Addr
		e *entry
	}
	var commit []pending
	for _, a := range addrs {
		e := f.entries[a]
		nl := firewall.Learned{Addr: a, Ports: ports, Names: []string{name}}
		expires := now.Add(timeout)
		if e != nil {
			nl.Ports = firewall.UnionPorts(e.l.Ports, ports)
			nl.Names = e.l.Names
			if !slices.Contains(nl.Names, name) {
				nl.Names = append(slices.Clone(nl.Names), name)
			}
			if e.expires.After(expires) {
				expires = e.expires
			}
			// Nothing new and more than half of the new timeout left: no kernel write.
			if slices.Equal(nl.Ports, e.l.Ports) && len(nl.Names) == len(e.l.Names) && e.expires.Sub(now) > timeout/2 {
				continue
			}
		}
		nl.Timeout = expires.Sub(now)
		ne := &entry{l: nl, expires: expires, touched: now}
		var old *firewall.Learned
		if e != nil {
			old = &e.l
			delta[fam(a)] -= len(e.l.Elems())
			refreshed++
		} else {
			added++
		}
		delta[fam(a)] += len(nl.Elems())
		changes = append(changes, firewall.Change{Old: old, New: &ne.l})
		commit = append(commit, pending{a, ne})
	}
	if len(changes) == 0 {
		return nil
	}
	// Stay within the cap: evict the addresses learned longest ago.
	var evict []netip.Addr
	for fi := 0; fi < 2; fi++ {
		need := f.elems[fi] + delta[fi] - f.cfg.Max
		if need <= 0 {
			continue
		}
		var cands []*entry
		for a, e := range f.entries {
			if fam(a) == fi && !slices.Contains(addrs, a) { // no map per answer: this runs for every answer of a known name
				cands = append(cands, e)
			}
		}
		slices.SortFunc(cands, func(x, y *entry) int { return x.touched.Compare(y.touched) })
		for _, e := range cands {
			if need <= 0 {
				break
			}
			n := len(e.l.Elems())
			changes = append(changes, firewall.Change{Old: &e.l})
			evict = append(evict, e.l.Addr)
			delta[fi] -= n
			need -= n
		}
		if need > 0 {
			// One answer alone is bigger than the cap: learn what fits.
			for i := len(changes) - 1; i >= 0 && need > 0; i-- {
				c := changes[i]
				if c.New == nil || fam(c.New.Addr) != fi || c.Old != nil {
					continue
				}
				n := len(c.New.Elems())
				changes = slices.Delete(changes, i, i+1)
				for j, p := range commit {
					if p.a == c.New.Addr {
						commit = slices.Delete(commit, j, j+1)
						break
					}
				}
				delta[fi] -= n
				need -= n
				added--
				f.c.evicted.Add(1)
			}
		}
	}
	if err := f.learner.Update(changes); err != nil {
		return err
	}
	for _, a := range evict {
		delete(f.entries, a)
	}
	for _, p := range commit {
		f.entries[p.a] = p.e
	}
	f.elems[0] += delta[0]
	f.elems[1] += delta[1]
	f.c.learned.Add(uint64(added))
	f.c.refreshed.Add(uint64(refreshed))
	f.c.evicted.Add(uint64(len(evict)))
	return nil
}
