package dnsfwd

import (
	"context"
	"time"

	"github.com/voipgw/voipgw/resolver"
)

// Re-resolution bounds: a name is asked again when its TTL runs out, but not more
// often than minRecheck (a TTL of 0 or 5 s must not make a query loop), and a name
// that fails is retried after failRecheck.
const (
	minRecheck  = 30 * time.Second
	failRecheck = time.Minute
)

// refreshStatic re-resolves the allowlist's static host names on their TTL and
// learns the addresses, so a provider host that moves (round-robin, CDN) stays
// reachable between applies even if no phone asked for it through the forwarder.
func (f *Forwarder) refreshStatic(ctx context.Context) {
	if len(f.cfg.StaticNames) == 0 {
		return
	}
	r := &resolver.Resolver{Upstreams: f.cfg.Upstreams, Timeout: f.cfg.Timeout}
	due := map[string]time.Time{}
	now := time.Now()
	for _, n := range f.cfg.StaticNames {
		due[n] = now // apply resolved them a moment ago; this also fills the learned state
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now = time.Now()
		var names []string
		for n, t := range due {
			if !t.After(now) {
				names = append(names, n)
			}
		}
		for name, res := range r.LookupAll(ctx, names, nil) {
			if ctx.Err() != nil {
				return
			}
			next := failRecheck
			if res.Err == nil {
				ports := f.cfg.Matcher.Ports(name)
				if len(ports) > 0 {
					if err := f.Learn(name, ports, res.Addrs, res.TTL); err != nil {
						f.c.learnErrors.Add(1)
						f.cfg.Log.Error("dns: could not learn a re-resolved host", "name", name, "err", err)
					} else {
						f.c.resolved.Add(1)
					}
				}
				next = max(res.TTL, minRecheck)
			} else {
				f.cfg.Log.Debug("dns: re-resolving failed", "name", name, "err", res.Err)
			}
			due[name] = time.Now().Add(next)
		}
		earliest := time.Now().Add(time.Hour)
		for _, t := range due {
			if t.Before(earliest) {
				earliest = t
			}
		}
		timer.Reset(time.Until(earliest))
	}
}
