package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/voipgw/voipgw/uci"
)

// SIP configures what voipgw does about SIP ALGs (conntrack helpers) and the
// conntrack timeouts that hold the phones' NAT bindings (the `sip` section).
type SIP struct {
	// ALG leaves every SIP helper of the system alone (the provider says: off).
	// With false, voipgw neutralises helpers that would act on the VoIP network.
	ALG bool `json:"alg"`
	// SIPPorts are the UDP destination ports of SIP flows from the VoIP network.
	SIPPorts []PortSpan `json:"sip_ports"`
	// SIPTimeout is how long an idle UDP SIP flow (and so its NAT binding) lives.
	SIPTimeout time.Duration `json:"sip_timeout"`
	// RTPPorts are the UDP destination ports of media flows from the VoIP network.
	RTPPorts []PortSpan `json:"rtp_ports"`
	// RTPTimeout is how long an idle UDP media flow lives.
	RTPTimeout time.Duration `json:"rtp_timeout"`
}

// PortSpan is an inclusive port range; First == Last for one port.
type PortSpan struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

func (p PortSpan) String() string {
	if p.First == p.Last {
		return strconv.Itoa(int(p.First))
	}
	return fmt.Sprintf("%d-%d", p.First, p.Last)
}

// Defaults of the sip section. The SIP ports are the UDP SIP ports of the
// provider's SBCs (5060, and the alternatives 5075, 5080, 5090); the RTP range is
// theirs too. 300 s for SIP outlives every keep-alive interval phones ship with
// (Yealink, Gigaset and Polycom default to 30-60 s; registrations renew at most
// every 3600 s and re-use the flow) while the kernel's own UDP timeouts are 30 s
// unreplied / 120 s replied. 180 s for media holds a call on hold that sends no
// RTP for up to three minutes.
var (
	DefaultSIPPorts = []PortSpan{{5060, 5060}, {5075, 5075}, {5080, 5080}, {5090, 5090}}
	DefaultRTPPorts = []PortSpan{{40000, 65000}}
)

const (
	DefaultSIPTimeout = 300 * time.Second
	DefaultRTPTimeout = 180 * time.Second
)

func init() {
	knownOptions["sip"] = []string{"alg", "sip_port", "sip_timeout", "rtp_port", "rtp_timeout"}
}

// sipFromUCI reads the `sip` section (at most one is used; defaults without one).
func (v *validator) sipFromUCI(f *uci.File, c *Config) {
	c.SIP = SIP{
		SIPPorts: DefaultSIPPorts, SIPTimeout: DefaultSIPTimeout,
		RTPPorts: DefaultRTPPorts, RTPTimeout: DefaultRTPTimeout,
	}
	secs := f.SectionsOfType("sip")
	if len(secs) == 0 {
		return
	}
	if len(secs) > 1 {
		v.failSection(secs[1].Label(), "only one sip section is allowed")
		return
	}
	s := secs[0]
	if b, ok := v.bool(s, "alg"); ok {
		c.SIP.ALG = b
	}
	if ps := v.portSpans(s, "sip_port"); ps != nil {
		c.SIP.SIPPorts = ps
	}
	if ps := v.portSpans(s, "rtp_port"); ps != nil {
		c.SIP.RTPPorts = ps
	}
	// Below 30 s a timeout would be shorter than the kernel's own default and
	// defeat the purpose; a day is far beyond any keep-alive interval.
	if n, ok := v.uint(s, "sip_timeout", 30, 86400); ok {
		c.SIP.SIPTimeout = time.Duration(n) * time.Second
	}
	if n, ok := v.uint(s, "rtp_timeout", 30, 86400); ok {
		c.SIP.RTPTimeout = time.Duration(n) * time.Second
	}
	// A port cannot be both: its flows would get whichever rule came first.
	for _, a := range c.SIP.SIPPorts {
		for _, b := range c.SIP.RTPPorts {
			if a.First <= b.Last && b.First <= a.Last {
				v.fail(s, "rtp_port", b.String(), fmt.Sprintf("overlaps sip_port %s", a))
			}
		}
	}
}

// portSpans parses `list NAME '5060'` / `'40000-65000'`; nil when the option is absent.
func (v *validator) portSpans(s *uci.Section, name string) []PortSpan {
	vals := v.list(s, name)
	if len(vals) == 0 {
		return nil
	}
	var out []PortSpan
	for _, val := range vals {
		for _, f := range strings.Fields(val) {
			p, err := parsePortSpan(f)
			if err != nil {
				v.fail(s, name, val, err.Error())
				return nil
			}
			out = append(out, p)
		}
	}
	return out
}

func parsePortSpan(s string) (PortSpan, error) {
	first, last, isRange := strings.Cut(s, "-")
	a, err1 := strconv.ParseUint(first, 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(last, 10, 16)
	}
	if err1 != nil || err2 != nil || a == 0 || b == 0 || b < a {
		return PortSpan{}, fmt.Errorf("not a UDP port or range (1-65535, e.g. 5060 or 40000-65000)")
	}
	return PortSpan{uint16(a), uint16(b)}, nil
}
