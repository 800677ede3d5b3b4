package firewall

import (
	"net/netip"
	"time"

	"github.com/voipgw/voipgw/catalog"
)

func mustPorts(ss ...string) []catalog.PortRange {
	var out []catalog.PortRange
	for _, s := range ss {
		p, err := catalog.ParsePort(s)
		if err != nil {
			panic(err)
		}
		out = append(out, p...)
	}
	return out
}

func allowsFor(dest string, ports ...string) []Allow {
	p := netip.MustParsePrefix(dest)
	var out []Allow
	for _, pr := range mustPorts(ports...) {
		out = append(out, Allow{Prefix: p, Port: pr})
	}
	return out
}

// labSpec is a small but complete spec shaped like the lab's.
func labSpec() Spec {
	var allow []Allow
	allow = append(allow, allowsFor("0.0.0.0/0", "udp/53", "tcp/53", "udp/123")...)
	allow = append(allow, allowsFor("::/0", "udp/53", "tcp/53", "udp/123")...)
	allow = append(allow, allowsFor("203.0.113.10/32", "udp-tcp/5060", "tcp/5061", "udp/40000-65000")...)
	allow = append(allow, allowsFor("203.0.113.11/32", "udp-tcp/5060", "tcp/5061", "udp-tcp/5075", "udp/40000-65000")...)
	allow = append(allow, allowsFor("2001:db8:cafe::10/128", "udp-tcp/5060", "udp/40000-65000")...)
	allow = append(allow, allowsFor("198.51.100.128/25", "udp/5004", "udp/9000", "udp/123")...)
	return Spec{
		Table: "voipgw", VoIPIf: "voip0", WAN: "wan0", LAN: []string{"lan0"},
		Subnet4: netip.MustParsePrefix("192.0.2.0/25"), Subnet6: netip.MustParsePrefix("2001:db8:20::/64"),
		Allow: allow, Scan: ScanSpec{Enabled: true, Threshold: 10, Window: 3 * time.Second, Timeout: time.Hour},
		ConfigHash: "0123456789abcdef",
	}
}
