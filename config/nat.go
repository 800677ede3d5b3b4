package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/uci"
)

// NAT configures the full-cone (endpoint-independent) NAT of the phones' UDP
// flows (the `nat` section).
type NAT struct {
	Enabled bool `json:"enabled"`
	// Ports are the phones' own (source) UDP ports that get a stable mapping;
	// empty: every UDP port of the VoIP subnet.
	Ports []PortSpan `json:"ports,omitempty"`
	// Filtering says who may send to a mapping: FilteringProvider (only the
	// allowlisted platform addresses) or FilteringEndpointIndependent (anyone).
	Filtering string `json:"filtering"`
	// Timeout is how long a mapping outlives the last packet of its endpoint.
	Timeout time.Duration `json:"timeout"`
	// Remap is where an endpoint whose own port another endpoint's mapping holds
	// gets its external port from.
	Remap PortSpan `json:"remap_port"`
}

// Keepalive configures the RTP keep-alive helper of `voipgw run` (the
// `keepalive` section).
type Keepalive struct {
	Enabled bool `json:"enabled"`
	// Interval: a media flow whose phone has sent nothing for this long gets a
	// keep-alive, and one more every Interval while the phone stays silent.
	Interval time.Duration `json:"interval"`
	// Ports are the destination UDP ports that make a phone's flow a media flow.
	Ports []PortSpan `json:"ports"`
	// MaxIdle ends the keep-alives of a flow whose phone stays silent this long
	// (the call is over; the helper must not hold a dead flow forever).
	MaxIdle time.Duration `json:"max_idle"`
	// MaxFlows caps the flows the helper follows.
	MaxFlows int `json:"max_flows"`
}

// Filtering values of the nat section.
const (
	FilteringProvider            = "provider"
	FilteringEndpointIndependent = "endpoint-independent"
)

// Defaults of the nat and keepalive sections.
//
// Filtering defaults to provider: the seed asks for nothing open inbound, and an
// endpoint-independent mapping that anyone may send to exposes the phones' SIP
// port mapping to every SIP scanner on the internet (ghost calls), and lets any
// host start a two-way flow with a phone that the allowlist would never let the
// phone start. The provider's SBCs and media servers are the allowlisted
// destinations, so they reach the phones through any mapping.
//
// The mapping timeout outlives conntrack's UDP timeouts (30 s unreplied, 120 s
// stream; OpenWrt 60 s / 180 s) and the phones' keep-alive intervals, so a phone
// keeps its external port between flows.
//
// The keep-alive ports are the seed's (s)RTP range of the SBCs.
var DefaultKeepalivePorts = []PortSpan{{40000, 65000}}

// DefaultNATRemap is the external port range of remapped endpoints: 4 000 ports
// clear of the usual router services (VPNs, SIP servers, Linux's ephemeral range
// 32768-60999), and small enough for the kernel's port table (one map element per
// port, about 64 bytes each).
var DefaultNATRemap = PortSpan{20000, 23999}

const (
	DefaultNATTimeout        = 300 * time.Second
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultKeepaliveMaxIdle  = time.Hour
	DefaultKeepaliveMaxFlows = 1024
)

func init() {
	knownOptions["nat"] = []string{"enabled", "port", "filtering", "timeout", "remap_port"}
	knownOptions["keepalive"] = []string{"enabled", "interval", "port", "max_idle", "max_flows"}
}

// natFromUCI reads the nat and keepalive sections (defaults without them).
func (v *validator) natFromUCI(f *uci.File, c *Config) {
	c.NAT = NAT{Enabled: true, Filtering: FilteringProvider, Timeout: DefaultNATTimeout, Remap: DefaultNATRemap}
	c.Keepalive = Keepalive{Enabled: true, Interval: DefaultKeepaliveInterval, Ports: DefaultKeepalivePorts,
		MaxIdle: DefaultKeepaliveMaxIdle, MaxFlows: DefaultKeepaliveMaxFlows}

	if s := v.single(f, "nat"); s != nil {
		if b, ok := v.bool(s, "enabled"); ok {
			c.NAT.Enabled = b
		}
		c.NAT.Ports = v.udpPorts(s, "port")
		if val, ok := v.opt(s, "filtering"); ok {
			switch val {
			case FilteringProvider, FilteringEndpointIndependent:
				c.NAT.Filtering = val
			default:
				v.fail(s, "filtering", val, "use provider (inbound through a mapping only from the allowlisted platform) or endpoint-independent (full cone: from anyone)")
			}
		}
		// The floor keeps a mapping alive across conntrack's shortest UDP timeout
		// in tests and labs; below it the "stable mapping" would not be stable.
		if n, ok := v.uint(s, "timeout", 5, 86400); ok {
			c.NAT.Timeout = time.Duration(n) * time.Second
		}
		if val, ok := v.opt(s, "remap_port"); ok {
			if ps := v.udpPorts(s, "remap_port"); len(ps) == 1 {
				switch r := ps[0]; {
				case r.First < 1024:
					v.fail(s, "remap_port", val, "must not reach below 1024 (ports of well-known services)")
				case int(r.Last)-int(r.First)+1 < 64 || int(r.Last)-int(r.First)+1 > 16384:
					v.fail(s, "remap_port", val, "must be one range of 64 to 16384 ports, e.g. 20000-23999")
				default:
					c.NAT.Remap = r
				}
			} else if len(ps) > 1 {
				v.fail(s, "remap_port", val, "must be one range, e.g. 20000-23999")
			}
		}
	}
	if s := v.single(f, "keepalive"); s != nil {
		if b, ok := v.bool(s, "enabled"); ok {
			c.Keepalive.Enabled = b
		}
		if n, ok := v.uint(s, "interval", 1, 3600); ok {
			c.Keepalive.Interval = time.Duration(n) * time.Second
		}
		if ps := v.udpPorts(s, "port"); ps != nil {
			c.Keepalive.Ports = ps
		}
		if n, ok := v.uint(s, "max_idle", 1, 7*86400); ok {
			c.Keepalive.MaxIdle = time.Duration(n) * time.Second
		}
		if n, ok := v.uint(s, "max_flows", 1, 1<<16); ok {
			c.Keepalive.MaxFlows = int(n)
		}
		if c.Keepalive.MaxIdle < c.Keepalive.Interval {
			v.fail(s, "max_idle", fmtSeconds(c.Keepalive.MaxIdle), "must not be below interval")
		}
	}
}

// single returns the one section of a type, nil without one; a second is an error.
func (v *validator) single(f *uci.File, typ string) *uci.Section {
	secs := f.SectionsOfType(typ)
	if len(secs) == 0 {
		return nil
	}
	if len(secs) > 1 {
		v.failSection(secs[1].Label(), fmt.Sprintf("only one %s section is allowed", typ))
		return nil
	}
	return secs[0]
}

// udpPorts parses `list port 'udp/5060'` / `'udp/10000-20000'` (the allowlist's
// syntax; a bare number or range means UDP). Full cone and keep-alive are about
// UDP only, so tcp is refused. Nil when the option is absent.
func (v *validator) udpPorts(s *uci.Section, name string) []PortSpan {
	var out []PortSpan
	for _, val := range v.list(s, name) {
		for _, field := range strings.Fields(val) {
			spec := field
			if !strings.Contains(spec, "/") {
				spec = "udp/" + spec
			}
			prs, err := catalog.ParsePort(spec)
			if err != nil {
				v.fail(s, name, val, err.Error())
				return nil
			}
			for _, pr := range prs {
				if pr.Proto != catalog.UDP {
					v.fail(s, name, val, "only UDP ports (udp/5060, udp/10000-20000): NAT mappings and keep-alives are for UDP flows")
					return nil
				}
				out = append(out, PortSpan{First: pr.First, Last: pr.Last})
			}
		}
	}
	return out
}
