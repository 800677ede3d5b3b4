package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Addresses of the DNS forwarder's lab: a second name server on the internet side
// whose zone tests change at will (wildcards, CNAME chains, synthetic floods), and
// hosts that only its names lead to.
var (
	ZoneServer = netip.MustParseAddr("203.0.113.54") // the forwarder's upstream in the DNS tests
	WildHost   = netip.MustParseAddr("203.0.113.70") // reached only through a wildcard name
	OtherHost  = netip.MustParseAddr("203.0.113.71") // a name no allowlist entry matches
	SpoofHost  = netip.MustParseAddr("203.0.113.72") // what spoofed answers claim
	ShortHost  = netip.MustParseAddr("203.0.113.73") // a wildcard name with a short TTL
	ExtraHosts = []netip.Addr{WildHost, OtherHost, SpoofHost, ShortHost}
)

// Zone is a programmable authoritative server for tests.
type Zone struct {
	mu      sync.Mutex
	ttl     uint32                  // of every record; 0 means 300
	records map[string][]netip.Addr // "name" or "*.domain"
	cnames  map[string]string
	synth   map[string]func(name string) netip.Addr // "*.domain" → address per name
	before  func(w dns.ResponseWriter, req *dns.Msg)

	Queries atomic.Uint64
}

func canon(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// SetTTL sets the TTL of every record (0: 300 s).
func (z *Zone) SetTTL(ttl uint32) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.ttl = ttl
}

// SetBeforeAnswer installs fn (nil removes it): it runs before the real answer is
// written and may write other datagrams to the asker (spoofed replies).
func (z *Zone) SetBeforeAnswer(fn func(w dns.ResponseWriter, req *dns.Msg)) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.before = fn
}

// Set makes name (or "*.domain") answer with addrs.
func (z *Zone) Set(name string, addrs ...netip.Addr) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.records == nil {
		z.records = map[string][]netip.Addr{}
	}
	z.records[canon(name)] = addrs
}

// SetCNAME makes name an alias of target.
func (z *Zone) SetCNAME(name, target string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.cnames == nil {
		z.cnames = map[string]string{}
	}
	z.cnames[canon(name)] = canon(target)
}

// Synth answers every name below domain with the address fn gives it.
func (z *Zone) Synth(domain string, fn func(name string) netip.Addr) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.synth == nil {
		z.synth = map[string]func(string) netip.Addr{}
	}
	z.synth[canon(domain)] = fn
}

func (z *Zone) lookup(name string) ([]netip.Addr, bool) {
	if a, ok := z.records[name]; ok {
		return a, true
	}
	for rest := name; ; {
		_, after, ok := strings.Cut(rest, ".")
		if !ok {
			return nil, false
		}
		if a, ok := z.records["*."+after]; ok {
			return a, true
		}
		if fn, ok := z.synth[after]; ok {
			return []netip.Addr{fn(name)}, true
		}
		rest = after
	}
}

// ServeDNS answers A and AAAA queries from the zone, following its CNAMEs.
func (z *Zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.Queries.Add(1)
	z.mu.Lock()
	before, ttl := z.before, z.ttl
	z.mu.Unlock()
	if before != nil {
		before(w, req)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	if ttl == 0 {
		ttl = 300
	}
	z.mu.Lock()
	name := canon(q.Name)
	owner := q.Name
	for hops := 0; hops < 8; hops++ {
		target, ok := z.cnames[name]
		if !ok {
			break
		}
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: dns.Fqdn(target)})
		name, owner = target, dns.Fqdn(target)
	}
	addrs, found := z.lookup(name)
	z.mu.Unlock()
	if !found && len(m.Answer) == 0 {
		m.Rcode = dns.RcodeNameError
		w.WriteMsg(m)
		return
	}
	for _, a := range addrs {
		hdr := dns.RR_Header{Name: owner, Class: dns.ClassINET, Ttl: ttl}
		switch {
		case q.Qtype == dns.TypeA && a.Is4():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case q.Qtype == dns.TypeAAAA && a.Is6():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	w.WriteMsg(m)
}

// ServeZone serves z on UDP and TCP at addr in the current namespace (used by unit
// tests on loopback). The returned function stops it.
func ServeZone(addr netip.AddrPort, z *Zone) (netip.AddrPort, func() error, error) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("zone server: %w", err)
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(bound))
	if err != nil {
		pc.Close()
		return netip.AddrPort{}, nil, fmt.Errorf("zone server: %w", err)
	}
	var servers []*dns.Server
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		ready := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(ready) }
		errc := make(chan error, 1)
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-ready:
		case err := <-errc:
			return netip.AddrPort{}, nil, fmt.Errorf("zone server: %w", err)
		case <-time.After(5 * time.Second):
			return netip.AddrPort{}, nil, errors.New("zone server did not start")
		}
		servers = append(servers, srv)
	}
	return bound, func() error {
		for _, s := range servers {
			s.Shutdown()
		}
		return nil
	}, nil
}

// StartZone serves z from ZoneServer:53 in the inet namespace and opens UDP echo
// and TCP accept listeners (udp/5060, tcp/80, tcp/443) on ExtraHosts. It stops
// when the lab closes.
func (l *Lab) StartZone(z *Zone) error {
	var stops []func() error
	var wg sync.WaitGroup
	err := l.Inet.Do(func() error {
		for _, h := range append([]netip.Addr{ZoneServer}, ExtraHosts...) {
			if err := addAddr("lo", netip.PrefixFrom(h, h.BitLen())); err != nil {
				return err
			}
		}
		_, stop, err := ServeZone(netip.AddrPortFrom(ZoneServer, 53), z)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		for _, h := range ExtraHosts {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h, 5060)))
			if err != nil {
				return err
			}
			stops = append(stops, c.Close)
			wg.Add(1)
			go func() { defer wg.Done(); udpEcho(c) }()
			for _, port := range []uint16{80, 443} {
				ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(h, port)))
				if err != nil {
					return err
				}
				stops = append(stops, ln.Close)
				wg.Add(1)
				go func() { defer wg.Done(); tcpEcho(ln) }()
			}
		}
		return nil
	})
	l.closers = append(l.closers, func() error {
		for _, s := range stops {
			s()
		}
		wg.Wait()
		return nil
	})
	return err
}

// Resolve asks server from ns for name (A or AAAA) over proto ("udp" or "tcp") and
// returns the answer's addresses and the reply.
func Resolve(ns *NS, server netip.AddrPort, proto, name string, qtype uint16, timeout time.Duration) ([]netip.Addr, *dns.Msg, error) {
	var out []netip.Addr
	var resp *dns.Msg
	err := ns.Do(func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		c := &dns.Client{Net: proto, Timeout: timeout}
		var err error
		resp, _, err = c.Exchange(m, server.String())
		if err != nil {
			return err
		}
		out = AnswerAddrs(resp)
		return nil
	})
	return out, resp, err
}

// AnswerAddrs lists the A and AAAA addresses of an answer section, in order.
func AnswerAddrs(m *dns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		switch a := rr.(type) {
		case *dns.A:
			ip, _ := netip.AddrFromSlice(a.A.To4())
			out = append(out, ip)
		case *dns.AAAA:
			ip, _ := netip.AddrFromSlice(a.AAAA)
			out = append(out, ip)
		}
	}
	return out
}
