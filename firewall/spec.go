package firewall

import (
	"net/netip"
	"slices"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/config"
)

// Unresolved is an allowlist destination that gave no address at apply time.
type Unresolved struct {
	Source string // "profile yealink", "allow own-pbx"
	Dest   string
	Reason string
}

// HostNames lists the host names the config's allowlist needs resolved (sorted, unique).
// Wildcards are not resolvable in advance; they are learned from DNS answers.
func HostNames(c *config.Config) []string {
	var names []string
	for _, a := range c.Allows {
		for _, d := range a.Dests {
			if d.Kind == catalog.DestHost {
				names = append(names, d.Name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// SpecFromConfig builds the firewall spec from a validated config and the addresses
// its host names resolved to. It is pure. Names without addresses and wildcards are
// reported, not fatal: one provider host that does not resolve must not keep the
// phones from everything else.
func SpecFromConfig(c *config.Config, resolved map[string][]netip.Addr, hash string) (Spec, []Unresolved) {
	s := Spec{
		Table: c.Table, VoIPIf: c.Net.Ifname, WAN: c.WAN, LAN: c.LAN,
		Subnet4: c.Net.Subnet4(), Subnet6: c.Net.Subnet6(),
		Scan:       ScanSpec{Enabled: c.Scan.Enabled, Threshold: c.Scan.Threshold, Window: c.Scan.Window, Timeout: c.Scan.Timeout},
		ICMPRate:   c.ICMPRate,
		ConfigHash: hash,
	}
	s.DNS = dnsSpecFromConfig(c) // learned.go
	s.SIP = sipSpecFromConfig(c) // sip.go
	s.NAT = natSpecFromConfig(c) // nat.go
	var missing []Unresolved
	for _, a := range c.Allows {
		var prefixes []netip.Prefix
		for _, d := range a.Dests {
			switch d.Kind {
			case catalog.DestPrefix:
				prefixes = append(prefixes, d.Prefix)
			case catalog.DestHost:
				addrs := resolved[d.Name]
				if len(addrs) == 0 {
					missing = append(missing, Unresolved{Source: a.Source, Dest: d.String(), Reason: "did not resolve"})
				}
				for _, ip := range addrs {
					// An IPv4-mapped answer is an IPv4 destination (as ParseDest
					// treats one); left mapped it would land in allow6 and never match.
					ip = ip.Unmap().WithZone("")
					prefixes = append(prefixes, netip.PrefixFrom(ip, ip.BitLen()))
				}
			case catalog.DestWildcard:
				missing = append(missing, Unresolved{Source: a.Source, Dest: d.String(), Reason: "wildcard: learned from DNS answers by the daemon, not at apply"})
			}
		}
		s.Allow = slices.Grow(s.Allow, len(prefixes)*len(a.Ports)) // one section can be 100 000 entries
		for _, p := range prefixes {
			for _, port := range a.Ports {
				s.Allow = append(s.Allow, Allow{Prefix: p, Port: port})
			}
		}
	}
	return s, missing
}
