// Package resolver looks up the allowlist's host names at apply time (A and AAAA,
// following CNAMEs) with voipgw's own DNS codec (dnsmsg), so the caller controls
// the upstream servers and sees TTLs; the DNS forwarder that learns addresses from
// the phones' own lookups builds on the same codec.
package resolver

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voipgw/voipgw/dnsmsg"
)

// Result is what one name resolved to.
type Result struct {
	Addrs []netip.Addr
	TTL   time.Duration // smallest TTL seen, for re-resolution
	Err   error         // set when neither A nor AAAA gave an address
}

// Resolver queries the given upstream servers.
type Resolver struct {
	Upstreams []netip.AddrPort
	Timeout   time.Duration // per query; default 2 s
	Parallel  int           // concurrent lookups; default 8
}

// SystemUpstreams reads the name servers of /etc/resolv.conf (its "nameserver"
// lines; port 53).
func SystemUpstreams(path string) ([]netip.AddrPort, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer file.Close()
	var out []netip.AddrPort
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 1 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a, 53))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no name servers", path)
	}
	return out, nil
}

// LookupAll resolves every name; the progress callback (may be nil) is called after each.
func (r *Resolver) LookupAll(ctx context.Context, names []string, progress func(done, total int)) map[string]Result {
	par := r.Parallel
	if par <= 0 {
		par = 8
	}
	out := make(map[string]Result, len(names))
	var mu sync.Mutex
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	done := 0
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func(name string) {
			defer wg.Done()
			defer func() { <-sem }()
			res := r.Lookup(ctx, name)
			mu.Lock()
			out[name] = res
			done++
			if progress != nil {
				progress(done, len(names))
			}
			mu.Unlock()
		}(n)
	}
	wg.Wait()
	return out
}

// Lookup resolves one name to its IPv4 and IPv6 addresses.
func (r *Resolver) Lookup(ctx context.Context, name string) Result {
	var res Result
	var errs []error
	for _, qt := range []uint16{dnsmsg.TypeA, dnsmsg.TypeAAAA} {
		addrs, ttl, err := r.query(ctx, name, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Addrs = append(res.Addrs, addrs...)
		if ttl > 0 && (res.TTL == 0 || ttl < res.TTL) {
			res.TTL = ttl
		}
	}
	slices.SortFunc(res.Addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	res.Addrs = slices.Compact(res.Addrs)
	if len(res.Addrs) == 0 {
		if len(errs) > 0 {
			res.Err = errors.Join(errs...)
		} else {
			res.Err = fmt.Errorf("%s has no A or AAAA records", name)
		}
	}
	return res
}

var typeNames = map[uint16]string{dnsmsg.TypeA: "A", dnsmsg.TypeAAAA: "AAAA"}

// rcodeNames as dig and miekg/dns print them.
var rcodeNames = map[int]string{0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
	6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADSIG", 17: "BADKEY", 18: "BADTIME",
	19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE"}

func rcodeName(rc int) string {
	if s, ok := rcodeNames[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	if len(r.Upstreams) == 0 {
		return nil, 0, errors.New("no DNS upstream configured")
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	fqdn := name
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	var lastErr error
	for _, up := range r.Upstreams {
		var idb [2]byte
		rand.Read(idb[:])
		q, err := dnsmsg.NewQuery(binary.BigEndian.Uint16(idb[:]), fqdn, qtype, true)
		if err != nil {
			return nil, 0, fmt.Errorf("%s %s: %w", name, typeNames[qtype], err)
		}
		in, err := exchange(ctx, "udp", q, up, timeout)
		if err == nil && in.Truncated() {
			in, err = exchange(ctx, "tcp", q, up, timeout)
		}
		if err != nil {
			lastErr = fmt.Errorf("%s %s via %s: %w", name, typeNames[qtype], up, err)
			continue
		}
		if rc := in.FullRcode(); rc != dnsmsg.RcodeSuccess {
			return nil, 0, fmt.Errorf("%s %s: %s", name, typeNames[qtype], rcodeName(rc))
		}
		addrs, ttl := answerAddrs(in, fqdn, qtype)
		return addrs, ttl, nil
	}
	return nil, 0, lastErr
}

// exchange sends the query q over network ("udp" or "tcp") to up and returns the
// reply: a response with q's ID and, if it has one, q's question, that parses.
// Over UDP anything else is discarded and the wait goes on (a late reply to an
// earlier query, a spoofed one); over TCP it is an error.
func exchange(ctx context.Context, network string, q []byte, up netip.AddrPort, timeout time.Duration) (*dnsmsg.Msg, error) {
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if network == "tcp" {
		b, err := dnsmsg.AskTCP(ctx, up, q, deadline)
		if err != nil {
			return nil, err
		}
		return reply(q, b)
	}
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, network, up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	b := make([]byte, 4096)
	for {
		n, err := c.Read(b)
		if err != nil {
			return nil, err
		}
		if m, err := reply(q, b[:n]); err == nil {
			return m, nil
		}
	}
}

// reply parses b and checks that it answers the query q.
func reply(q, b []byte) (*dnsmsg.Msg, error) {
	m, err := dnsmsg.Parse(b)
	if err != nil {
		return nil, err
	}
	if !m.Response() || m.ID != binary.BigEndian.Uint16(q) {
		return nil, errors.New("reply with another ID")
	}
	// A bare header (some servers answer REFUSED so) carries no question to compare.
	if len(m.Question) > 0 {
		qt := binary.BigEndian.Uint16(q[len(q)-4:])
		if len(m.Question) != 1 || m.Question[0].Type != qt || !dnsmsg.EqualNames(b, m.Question[0].NameOff, q, dnsmsg.HeaderLen) {
			return nil, errors.New("reply to another question")
		}
	}
	return m, nil
}

// answerAddrs follows the CNAME chain from name and returns the addresses at its end.
func answerAddrs(m *dnsmsg.Msg, name string, qtype uint16) ([]netip.Addr, time.Duration) {
	var ttl uint32
	minTTL := func(t uint32) {
		if ttl == 0 || t < ttl {
			ttl = t
		}
	}
	target := name
	for hops := 0; hops < 16; hops++ {
		next := ""
		for i := range m.Answer {
			rr := &m.Answer[i]
			if rr.Type == dnsmsg.TypeCNAME && rr.Target != "" && equalName(rr.Name, target) {
				next = rr.Target
				minTTL(rr.TTL)
			}
		}
		if next == "" {
			break
		}
		target = next
	}
	var out []netip.Addr
	for i := range m.Answer {
		rr := &m.Answer[i]
		if rr.Type == qtype && equalName(rr.Name, target) {
			if ip, ok := rr.Addr(); ok {
				out = append(out, ip)
				minTTL(rr.TTL)
			}
		}
	}
	return out, time.Duration(ttl) * time.Second
}

func equalName(a, b string) bool { return dnsmsg.CanonicalName(a) == dnsmsg.CanonicalName(b) }
