package config

import (
	"strconv"
	"time"

	"github.com/voipgw/voipgw/uci"
)

// Forwarder configures the DNS forwarder that `voipgw run` starts on the VoIP
// gateway address (options of the `dns` section). It learns the addresses the
// phones themselves are given for allowlisted names, so host names behind CDNs
// and wildcard domains work.
type Forwarder struct {
	Enabled bool `json:"enabled"`
	// TTLFloor is the shortest time a learned address stays allowed: phones keep
	// using an address longer than a short TTL says (their own caches, retries).
	TTLFloor time.Duration `json:"ttl_floor"`
	// TTLMax caps the learned timeout: a hostile or broken answer with a TTL of
	// years must not pin an entry (and the kernel rejects huge timeouts).
	TTLMax time.Duration `json:"ttl_max"`
	// LearnedMax bounds the elements of each learned set (learned4, learned6);
	// beyond it the oldest learned address is evicted.
	LearnedMax uint32 `json:"learned_max"`
}

// Defaults of the forwarder.
const (
	DefaultTTLFloor   = 5 * time.Minute
	DefaultTTLMax     = 24 * time.Hour
	DefaultLearnedMax = 4096
)

func init() {
	knownOptions["dns"] = append(knownOptions["dns"], "forwarder", "ttl_floor", "ttl_max", "learned_max")
}

// forwarderFromUCI reads the forwarder options of the `dns` section. It runs after
// the vlan section is parsed (c.Net), so it can refuse an upstream that is the
// forwarder itself.
func (v *validator) forwarderFromUCI(f *uci.File, c *Config) {
	c.Forwarder = Forwarder{Enabled: true, TTLFloor: DefaultTTLFloor, TTLMax: DefaultTTLMax, LearnedMax: DefaultLearnedMax}
	secs := f.SectionsOfType("dns")
	if len(secs) == 0 {
		return
	}
	s := secs[0]
	if b, ok := v.bool(s, "forwarder"); ok {
		c.Forwarder.Enabled = b
	}
	if n, ok := v.uint(s, "ttl_floor", 1, 7*86400); ok {
		c.Forwarder.TTLFloor = time.Duration(n) * time.Second
	}
	if n, ok := v.uint(s, "ttl_max", 1, 7*86400); ok {
		c.Forwarder.TTLMax = time.Duration(n) * time.Second
	}
	if c.Forwarder.TTLMax < c.Forwarder.TTLFloor {
		v.fail(s, "ttl_max", fmtSeconds(c.Forwarder.TTLMax), "must not be below ttl_floor")
	}
	if n, ok := v.uint(s, "learned_max", 16, 1<<20); ok {
		c.Forwarder.LearnedMax = uint32(n)
	}
	if !c.Forwarder.Enabled {
		return
	}
	// The forwarder asks its upstreams from the router itself; an upstream that is
	// the forwarder's own listening address would be a loop.
	for _, u := range c.DNS.Upstream {
		a := u.Addr()
		if (c.Net.IPv4.IsValid() && a == c.Net.IPv4.Addr()) || (c.Net.IPv6.IsValid() && a == c.Net.IPv6.Addr()) {
			v.fail(s, "upstream", u.String(), "is the DNS forwarder itself (the VoIP gateway address): a loop; list the router's resolver (e.g. 127.0.0.1) or the ISP's")
		}
	}
}

func fmtSeconds(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }
