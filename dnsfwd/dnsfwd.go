// Package dnsfwd is the DNS forwarder of the VoIP network. Phones ask it (DHCP
// hands out the gateway as DNS server, and the firewall redirects DNS to any other
// resolver to it); it asks the upstream resolvers and, for A/AAAA answers to names
// on the allowlist (exact host names or wildcards), puts the answered addresses
// into the table's learned sets with the ports of the matching allowlist entries
// BEFORE it passes the answer on, so the phone's first packet to the address is
// never dropped. Other names are answered normally and never widen the allowlist.
//
// It speaks DNS through voipgw's own codec (dnsmsg; serve.go has the UDP and TCP
// server) and passes the upstream's answers on as they came. Upstream replies are
// accepted only on the connected socket of the query, with the query's random ID
// and question, and only if they parse; anything else is discarded and counted.
package dnsfwd

import (
	"context"
	"crypto/rand"
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

	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/dnsmsg"
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

func (f *Forwarder) clientAllowed(ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	for _, p := range f.cfg.Clients {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// request is a phone's query as the forwarder uses it.
type request struct {
	raw     []byte // the query as the phone sent it, up to the end of its last record
	m       *dnsmsg.Msg
	q       dnsmsg.Question
	udpSize int // what the phone takes over UDP: 512, or its EDNS0 size
	tcp     bool
}

// handle answers one message of a phone (serve.go reads them). What it refuses
// to handle is answered as miekg/dns's server did: nothing for a response or a
// runt (any answer could be used to amplify), NOTIMP for another opcode than
// QUERY, FORMERR for a query that does not parse or has not one question.
func (f *Forwarder) handle(w *replyWriter, pkt []byte) {
	h, err := dnsmsg.ParseHeader(pkt)
	if err != nil || h.Response() {
		return
	}
	if h.Opcode() != dnsmsg.OpcodeQuery {
		// NOTIFY too: miekg's server let it through and the forwarder answered
		// it as if it were a query; a forwarder has no zones to be told about.
		w.write(dnsmsg.Reject(h, nil, dnsmsg.RcodeNotImplemented))
		return
	}
	// At most the records a query carries (an OPT, a TSIG; miekg's limits).
	if h.QDCount != 1 || h.ANCount > 1 || h.NSCount > 1 || h.ARCount > 2 {
		w.write(dnsmsg.Reject(h, nil, dnsmsg.RcodeFormatError))
		return
	}
	m, err := dnsmsg.Parse(pkt)
	if err != nil {
		w.write(dnsmsg.Reject(h, firstQuestion(pkt), dnsmsg.RcodeFormatError))
		return
	}
	f.c.queries.Add(1)
	if !f.clientAllowed(w.remote) {
		f.c.refused.Add(1)
		f.writeRcode(w, m, dnsmsg.RcodeRefused)
		return
	}
	if len(m.Question) != 1 { // a bare header
		f.writeRcode(w, m, dnsmsg.RcodeFormatError)
		return
	}
	req := &request{raw: pkt[:m.End], m: m, q: m.Question[0], udpSize: dnsmsg.MinMsgSize, tcp: w.tcp}
	if opt := m.OPT(); opt != nil {
		req.udpSize = max(int(opt.UDPSize()), dnsmsg.MinMsgSize)
	}
	if raw := f.cache.get(req, time.Now()); raw != nil {
		if f.serveRaw(w, req, raw) == nil {
			f.c.cached.Add(1)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout*time.Duration(len(f.cfg.Upstreams))+time.Second)
	defer cancel()
	rb := bufPool.Get().(*[]byte)
	defer bufPool.Put(rb)
	reply, err := f.exchange(ctx, req, *rb)
	if err != nil {
		f.c.upstreamErrors.Add(1)
		f.cfg.Log.Debug("dns: no upstream answered", "name", req.q.Name, "err", err)
		f.writeRcode(w, m, dnsmsg.RcodeServerFailure)
		return
	}
	// Learn first, answer second (serveRaw): the phone connects the moment it has the answer.
	if err := f.serveRaw(w, req, reply); err != nil {
		f.cfg.Log.Debug("dns: answer not passed on", "name", req.q.Name, "err", err)
		return
	}
	if !req.tcp {
		// Cached after the phone has its answer: the copy is not on its time.
		f.cache.put(req, reply, time.Now())
	}
}

// firstQuestion is the question of a query that did not parse as a whole, if it
// has one (miekg's server put it in its FORMERR answer).
func firstQuestion(pkt []byte) *dnsmsg.Question {
	name, off, err := dnsmsg.ReadName(pkt, dnsmsg.HeaderLen)
	if err != nil || off+4 > len(pkt) {
		return nil
	}
	return &dnsmsg.Question{Name: name, Type: binary.BigEndian.Uint16(pkt[off:]), Class: binary.BigEndian.Uint16(pkt[off+2:])}
}

// writeRcode answers m with rcode and no records.
func (f *Forwarder) writeRcode(w *replyWriter, m *dnsmsg.Msg, rcode int) {
	b, err := dnsmsg.Reply(m, rcode)
	if err != nil {
		b = dnsmsg.Reject(m.Header, nil, rcode)
	}
	w.write(b)
}

// serveRaw answers req with raw, an upstream's answer with req's ID, learning its
// addresses first if the name is allowlisted; over UDP cut to what the phone
// takes (with TC set: the phone asks again over TCP).
func (f *Forwarder) serveRaw(w *replyWriter, req *request, raw []byte) error {
	q := req.q
	if raw[3]&0x0f == dnsmsg.RcodeSuccess && (q.Type == dnsmsg.TypeA || q.Type == dnsmsg.TypeAAAA) && len(f.cfg.Matcher.Ports(q.Name)) > 0 {
		resp, err := dnsmsg.Parse(raw)
		if err != nil {
			return err
		}
		f.learnFromAnswer(q, resp)
	}
	if !req.tcp && len(raw) > req.udpSize {
		var err error
		if raw, err = dnsmsg.Truncate(raw, req.udpSize); err != nil {
			return err
		}
	}
	if err := w.write(raw); err != nil {
		return err
	}
	f.c.answered.Add(1)
	return nil
}

// exchange asks the upstreams, starting with the one that answered last, and
// returns the first reply (in rb, or a new slice for TCP) with the phone's ID.
// The query goes out as the phone wrote it, with an ID of our own. A truncated
// UDP reply is asked again over TCP so the whole answer is learned from; the
// phone still gets it truncated and asks over TCP itself.
func (f *Forwarder) exchange(ctx context.Context, req *request, rb []byte) ([]byte, error) {
	qb := bufPool.Get().(*[]byte)
	defer bufPool.Put(qb)
	query := append((*qb)[:0], req.raw...)
	id := randomID()
	binary.BigEndian.PutUint16(query, id)
	f.upMu.Lock()
	first := f.upFirst
	f.upMu.Unlock()
	var errs []error
	n := len(f.cfg.Upstreams)
	for i := 0; i < n; i++ {
		idx := (first + i) % n
		up := f.cfg.Upstreams[idx]
		var reply []byte
		var err error
		if req.tcp {
			reply, err = f.askTCP(ctx, query, id, req, up)
		} else {
			reply, err = f.askUDP(ctx, query, id, req, up, rb)
			if err == nil && reply[2]&0x02 != 0 {
				if full, terr := f.askTCP(ctx, query, id, req, up); terr == nil {
					dnsmsg.SetTC(full)
					reply = full
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
		binary.BigEndian.PutUint16(reply, req.m.ID)
		return reply, nil
	}
	return nil, errors.Join(errs...)
}

// randomID is a query ID from the system's random source (RFC 5452: the ID and
// the random source port are what a spoofer must guess).
func randomID() uint16 {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint16(time.Now().UnixNano())
	}
	return binary.BigEndian.Uint16(b[:])
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

// askUDP sends the query from a fresh connected socket (a new random source
// port per query) and returns the first datagram that answers it (in rb).
func (f *Forwarder) askUDP(ctx context.Context, query []byte, id uint16, req *request, up netip.AddrPort, rb []byte) ([]byte, error) {
	deadline := time.Now().Add(f.cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	n := f.waiting.Add(1)
	defer f.waiting.Add(-1)
	if n <= f.maxBlocking {
		return f.askUDPBlocking(deadline, query, id, req, up, rb)
	}
	return f.askUDPPoller(ctx, deadline, query, id, req, up, rb)
}

// askUDPPoller is askUDP through the runtime's poller.
func (f *Forwarder) askUDPPoller(ctx context.Context, deadline time.Time, query []byte, id uint16, req *request, up netip.AddrPort, rb []byte) ([]byte, error) {
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
		if !answers(rb[:n], id, req) {
			f.c.discarded.Add(1) // see askUDPBlocking
			continue
		}
		return rb[:n], nil
	}
}

// askUDPBlocking is askUDP on a socket of its own in blocking mode.
func (f *Forwarder) askUDPBlocking(deadline time.Time, query []byte, id uint16, req *request, up netip.AddrPort, rb []byte) ([]byte, error) {
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
		if !answers(rb[:n], id, req) {
			// Not the answer to this query (spoofed, a late reply to an earlier
			// one, or malformed): discard and keep waiting for the real one.
			f.c.discarded.Add(1)
			continue
		}
		return rb[:n], nil
	}
}

// askTCP asks over TCP (RFC 1035 §4.2.2: each message after its 16-bit length)
// and returns the reply in a new slice.
func (f *Forwarder) askTCP(ctx context.Context, query []byte, id uint16, req *request, up netip.AddrPort) ([]byte, error) {
	deadline := time.Now().Add(f.cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	reply, err := dnsmsg.AskTCP(ctx, up, query, deadline)
	if err != nil {
		return nil, err
	}
	if !answers(reply, id, req) {
		// One connection, one query: anything else is not the answer.
		f.c.discarded.Add(1)
		return nil, errors.New("reply does not match the query")
	}
	return reply, nil
}

// answers reports whether b is the reply to the query: a response with the query's
// ID, opcode QUERY and the same single question (name up to case), that parses.
func answers(b []byte, id uint16, req *request) bool {
	if len(b) < dnsmsg.HeaderLen || binary.BigEndian.Uint16(b) != id || b[2]&0x80 == 0 || (b[2]>>3)&0x0f != dnsmsg.OpcodeQuery ||
		binary.BigEndian.Uint16(b[4:]) != 1 {
		return false
	}
	off, err := dnsmsg.SkipName(b, dnsmsg.HeaderLen)
	if err != nil || off+4 > len(b) {
		return false
	}
	return binary.BigEndian.Uint16(b[off:]) == req.q.Type && binary.BigEndian.Uint16(b[off+2:]) == req.q.Class &&
		dnsmsg.EqualNames(b, dnsmsg.HeaderLen, req.raw, req.q.NameOff) && dnsmsg.Check(b) == nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, dnsmsg.MaxMsgSize); return &b }}

// answerAddrs follows the CNAME chain from the question's name and returns the
// addresses at its end with the smallest TTL seen along the chain.
func answerAddrs(q dnsmsg.Question, m *dnsmsg.Msg) ([]netip.Addr, time.Duration) {
	var ttl uint32
	first := true
	minTTL := func(t uint32) {
		if first || t < ttl {
			ttl, first = t, false
		}
	}
	target := dnsmsg.CanonicalName(q.Name)
	for hops := 0; hops < 16; hops++ {
		next := ""
		for i := range m.Answer {
			rr := &m.Answer[i]
			if rr.Type == dnsmsg.TypeCNAME && rr.Target != "" && dnsmsg.CanonicalName(rr.Name) == target {
				next = dnsmsg.CanonicalName(rr.Target)
				minTTL(rr.TTL)
				break
			}
		}
		if next == "" || next == target {
			break
		}
		target = next
	}
	var out []netip.Addr
	for i := range m.Answer {
		rr := &m.Answer[i]
		if rr.Class != dnsmsg.ClassINET || (rr.Type != dnsmsg.TypeA && rr.Type != dnsmsg.TypeAAAA) || rr.Type != q.Type ||
			dnsmsg.CanonicalName(rr.Name) != target {
			continue
		}
		if ip, ok := rr.Addr(); ok && !ip.Is4In6() {
			out = append(out, ip)
			minTTL(rr.TTL)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), time.Duration(ttl) * time.Second
}

func (f *Forwarder) learnFromAnswer(q dnsmsg.Question, resp *dnsmsg.Msg) {
	if resp.FullRcode() != dnsmsg.RcodeSuccess || (q.Type != dnsmsg.TypeA && q.Type != dnsmsg.TypeAAAA) {
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
