// Package resolver looks up the allowlist's host names at apply time (A and AAAA,
// following CNAMEs) with miekg/dns, so the caller controls the upstream servers and
// sees TTLs; the DNS forwarder that learns addresses from the phones' own lookups
// builds on the same library.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
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

// SystemUpstreams reads the name servers of /etc/resolv.conf.
func SystemUpstreams(path string) ([]netip.AddrPort, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	port, _ := strconv.Atoi(cc.Port)
	var out []netip.AddrPort
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(a, uint16(port)))
		}
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
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
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

func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, error) {
	if len(r.Upstreams) == 0 {
		return nil, 0, errors.New("no DNS upstream configured")
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	var lastErr error
	for _, up := range r.Upstreams {
		c := &dns.Client{Timeout: timeout}
		in, _, err := c.ExchangeContext(ctx, m, up.String())
		if err == nil && in.Truncated {
			c.Net = "tcp"
			in, _, err = c.ExchangeContext(ctx, m, up.String())
		}
		if err != nil {
			lastErr = fmt.Errorf("%s %s via %s: %w", name, dns.TypeToString[qtype], up, err)
			continue
		}
		if in.Rcode != dns.RcodeSuccess {
			return nil, 0, fmt.Errorf("%s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[in.Rcode])
		}
		addrs, ttl := answerAddrs(in, dns.Fqdn(name), qtype)
		return addrs, ttl, nil
	}
	return nil, 0, lastErr
}

// answerAddrs follows the CNAME chain from name and returns the addresses at its end.
func answerAddrs(m *dns.Msg, name string, qtype uint16) ([]netip.Addr, time.Duration) {
	var ttl uint32
	minTTL := func(t uint32) {
		if ttl == 0 || t < ttl {
			ttl = t
		}
	}
	target := name
	for hops := 0; hops < 16; hops++ {
		next := ""
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok && equalName(c.Hdr.Name, target) {
				next = c.Target
				minTTL(c.Hdr.Ttl)
			}
		}
		if next == "" {
			break
		}
		target = next
	}
	var out []netip.Addr
	for _, rr := range m.Answer {
		switch a := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA && equalName(a.Hdr.Name, target) {
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					out = append(out, ip)
					minTTL(a.Hdr.Ttl)
				}
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA && equalName(a.Hdr.Name, target) {
				if ip, ok := netip.AddrFromSlice(a.AAAA.To16()); ok {
					out = append(out, ip)
					minTTL(a.Hdr.Ttl)
				}
			}
		}
	}
	return out, time.Duration(ttl) * time.Second
}

func equalName(a, b string) bool { return dns.CanonicalName(a) == dns.CanonicalName(b) }
