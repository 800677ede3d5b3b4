// Package catalog holds the built-in allowlist profiles transcribed from the SIP
// provider's network requirements (../shared/seed) and the parsers for the
// destination and port syntax shared by the catalog and the UCI config.
package catalog

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Proto is an IP protocol number as nftables' inet_proto.
type Proto uint8

const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// PortRange is one protocol and an inclusive port range; First == Last for a single port.
type PortRange struct {
	Proto       Proto
	First, Last uint16
}

func (p PortRange) String() string {
	if p.First == p.Last {
		return fmt.Sprintf("%s/%d", p.Proto, p.First)
	}
	return fmt.Sprintf("%s/%d-%d", p.Proto, p.First, p.Last)
}

// ParsePort parses "udp/5060", "tcp/80-90" or, as the seed writes them,
// "udp-tcp/5060" / "tcp-udp/5061" (both protocols). Protocol names are case-insensitive.
func ParsePort(s string) ([]PortRange, error) {
	protoPart, portPart, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return nil, fmt.Errorf("port %q: want proto/port or proto/first-last (e.g. udp/5060)", s)
	}
	var protos []Proto
	switch strings.ToLower(protoPart) {
	case "udp":
		protos = []Proto{UDP}
	case "tcp":
		protos = []Proto{TCP}
	case "udp-tcp", "tcp-udp":
		protos = []Proto{UDP, TCP}
	default:
		return nil, fmt.Errorf("port %q: protocol %q is not udp, tcp or udp-tcp", s, protoPart)
	}
	firstS, lastS, isRange := strings.Cut(portPart, "-")
	first, err := parsePortNumber(firstS)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", s, err)
	}
	last := first
	if isRange {
		if last, err = parsePortNumber(lastS); err != nil {
			return nil, fmt.Errorf("port %q: %w", s, err)
		}
		if last < first {
			return nil, fmt.Errorf("port %q: range %d-%d is reversed", s, first, last)
		}
	}
	out := make([]PortRange, 0, len(protos))
	for _, p := range protos {
		out = append(out, PortRange{Proto: p, First: first, Last: last})
	}
	return out, nil
}

func parsePortNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port number %q is not in 1-65535", s)
	}
	return uint16(n), nil
}

// DestKind says what a destination is.
type DestKind int

const (
	DestHost     DestKind = iota // a host name resolved by the router (and learned from DNS)
	DestWildcard                 // *.example.com: only learnable from DNS answers
	DestPrefix                   // an address or CIDR
)

// Dest is one allowlist destination.
type Dest struct {
	Kind   DestKind
	Name   string       // host name, or the domain below the wildcard ("example.com" for *.example.com); lower case
	Prefix netip.Prefix // for DestPrefix; a single address is a /32 or /128
}

func (d Dest) String() string {
	switch d.Kind {
	case DestWildcard:
		return "*." + d.Name
	case DestPrefix:
		if d.Prefix.IsSingleIP() {
			return d.Prefix.Addr().String()
		}
		return d.Prefix.String()
	}
	return d.Name
}

// ParseDest parses a host name, a "*.domain" wildcard, an IPv4/IPv6 address or a CIDR.
func ParseDest(s string) (Dest, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Dest{}, fmt.Errorf("destination is empty")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Dest{}, fmt.Errorf("destination %q is not a valid CIDR", s)
		}
		if p.Masked() != p {
			return Dest{}, fmt.Errorf("destination %q has host bits set (did you mean %s?)", s, p.Masked())
		}
		// An IPv4-mapped prefix (::ffff:a.b.c.d/n, n >= 96) means IPv4
		// addresses, as a single mapped address does below; left mapped it
		// would land in an IPv6 set and never match.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return Dest{Kind: DestPrefix, Prefix: p}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return Dest{}, fmt.Errorf("destination %q: zoned addresses are not allowed", s)
		}
		a = a.Unmap()
		return Dest{Kind: DestPrefix, Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	kind := DestHost
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		kind, name = DestWildcard, rest
	}
	if err := checkHostName(name); err != nil {
		return Dest{}, fmt.Errorf("destination %q: %w", s, err)
	}
	if kind == DestWildcard && !strings.Contains(name, ".") {
		return Dest{}, fmt.Errorf("destination %q: a wildcard needs at least two labels below it", s)
	}
	return Dest{Kind: kind, Name: name}, nil
}

func checkHostName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("host name longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("host name has an empty or over-long label")
		}
		for i, c := range l {
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || (c == '-' && i > 0 && i < len(l)-1)
			if !ok {
				return fmt.Errorf("host name has an invalid character %q", c)
			}
		}
	}
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return fmt.Errorf("not an IP address and not a host name")
	}
	return nil
}

// Entry is one row of a profile: destinations and the ports allowed to all of them.
type Entry struct {
	Dests []string // as ParseDest accepts
	Ports []string // as ParsePort accepts
	Note  string   // where in the seed it comes from
}

// Profile is a named group of entries that a config enables or disables.
type Profile struct {
	Name        string
	Description string
	Default     bool // enabled unless the config says otherwise
	Entries     []Entry
}
