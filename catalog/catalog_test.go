package catalog

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// seedName is the provider's requirements document, kept outside the repository
// in ../shared/seed relative to the repository root.
const seedName = "000_c90f0c7ffd9825ca.txt"

func TestProfilesParse(t *testing.T) {
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			if err := p.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if p.Description == "" {
				t.Error("no description")
			}
			for i, e := range p.Entries {
				for _, d := range e.Dests {
					if _, err := ParseDest(d); err != nil {
						t.Errorf("entry %d: %v", i+1, err)
					}
				}
				for _, s := range e.Ports {
					if _, err := ParsePort(s); err != nil {
						t.Errorf("entry %d: %v", i+1, err)
					}
				}
				if e.Note == "" {
					t.Errorf("entry %d (%v) has no Note saying where in the seed it comes from", i+1, e.Dests)
				}
			}
		})
	}
}

func TestProfileNamesAndDefaults(t *testing.T) {
	var names []string
	seen := map[string]bool{}
	for _, p := range Profiles() {
		if seen[p.Name] {
			t.Errorf("duplicate profile name %q", p.Name)
		}
		seen[p.Name] = true
		names = append(names, p.Name)
	}
	wantNames := []string{"base", "cloudoe-sbc", "cloudoe-platform", "yealink", "gigaset", "polycom", "unity", "webex"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("Profiles() names = %v, want %v", names, wantNames)
	}
	wantDefault := []string{"base", "cloudoe-sbc", "cloudoe-platform"}
	if got := DefaultProfiles(); !slices.Equal(got, wantDefault) {
		t.Errorf("DefaultProfiles() = %v, want %v", got, wantDefault)
	}
	for _, p := range Profiles() {
		if p.Default != slices.Contains(wantDefault, p.Name) {
			t.Errorf("profile %q: Default = %v", p.Name, p.Default)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, want := range Profiles() {
		got, ok := Lookup(want.Name)
		if !ok || got.Name != want.Name || len(got.Entries) != len(want.Entries) {
			t.Errorf("Lookup(%q) = %q with %d entries, %v", want.Name, got.Name, len(got.Entries), ok)
		}
	}
	for _, name := range []string{"", "Base", "nope", "cloudoe"} {
		if _, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) found a profile", name)
		}
	}
}

func TestProfilesAreCopies(t *testing.T) {
	ps := Profiles()
	ps[0].Name = "changed"
	ps[0].Entries[0].Dests[0] = "changed.example"
	ps[0].Entries[0].Ports[0] = "tcp/1"
	ps[len(ps)-1].Entries = nil
	w, _ := Lookup("webex")
	for _, e := range w.Entries {
		e.Dests[0] = "changed.example" // the media entries share one slice in data.go
	}
	again := Profiles()
	if again[0].Name != "base" || again[0].Entries[0].Dests[0] != "0.0.0.0/0" || again[0].Entries[0].Ports[0] != "udp/53" {
		t.Errorf("modifying Profiles()' result changed the catalog: %+v", again[0])
	}
	w2, _ := Lookup("webex")
	for _, e := range w2.Entries {
		if e.Dests[0] == "changed.example" {
			t.Fatalf("modifying Lookup()'s result changed the catalog: %+v", e)
		}
	}
	if len(again[len(again)-1].Entries) == 0 {
		t.Error("modifying Profiles()' result dropped entries of the catalog")
	}
}

// TestProfileContents pins which destinations each profile holds (the brief's
// contract); the ports of the seed's hosts are checked by TestSeedCrossCheck.
func TestProfileContents(t *testing.T) {
	tests := []struct {
		profile string
		dests   []string
		entries int
	}{
		{"base", []string{"0.0.0.0/0", "::/0"}, 2},
		{"cloudoe-sbc", []string{"sbc.icvoip.net", "sbc-bria.icvoip.net", "osbc-tls.icvoip.net", "sbc-trunk.icvoip.net"}, 4},
		{"cloudoe-platform", []string{"ws1.icvoip.net", "ws2.icvoip.net", "adp5.wbx.icvoip.net", "adp6.wbx.icvoip.net",
			"cti1.wbx.icvoip.net", "cti2.wbx.icvoip.net"}, 6},
		{"yealink", []string{"d.voice2000.com", "voice2000.com", "update.yealink.com",
			"eu-device-scheduler.ymcs.yealink.com", "eu-app-scheduler.ymcs.yealink.com", "redirect.ymcs.yealink.com",
			"eu-device.ymcs.yealink.com", "eu-app.ymcs.yealink.com", "eu-app-req.ymcs.yealink.com",
			"eu-device-compat-req.ymcs.yealink.com", "rps.yealink.com", "rpscloud.yealink.com",
			"20.19.96.56", "20.19.96.62"}, 14},
		{"gigaset", []string{"profile.gigaset.net", "prov.gigaset.net"}, 2},
		{"polycom", []string{"ztp.polycom.com"}, 1},
		{"unity", []string{"portal.unityclient.com", "im.unityclient.com", "cs.unityclient.com", "attach.unityclient.com",
			"uatt.ch", "52.17.201.131", "99.80.25.98", "54.73.202.3"}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			p, ok := Lookup(tt.profile)
			if !ok {
				t.Fatalf("no profile %q", tt.profile)
			}
			got := sortedKeys(indexProfiles(t, p))
			want := slices.Clone(tt.dests)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("destinations = %v, want %v", got, want)
			}
			if len(p.Entries) != tt.entries {
				t.Errorf("%d entries, want %d (one per seed row)", len(p.Entries), tt.entries)
			}
		})
	}
	// base is not a seed table: pin its ports here.
	base, _ := Lookup("base")
	idx := indexProfiles(t, base)
	want := portSet("udp/53", "tcp/53", "udp/123")
	for _, d := range []string{"0.0.0.0/0", "::/0"} {
		if !maps.Equal(idx[d], want) {
			t.Errorf("base: %s ports = %v, want %v", d, sortedPorts(idx[d]), sortedPorts(want))
		}
	}
}

func TestValidate(t *testing.T) {
	good := Entry{Dests: []string{"example.com"}, Ports: []string{"tcp/443"}}
	tests := []struct {
		name    string
		p       Profile
		wantErr string
	}{
		{"ok", Profile{Name: "site-1", Entries: []Entry{good}}, ""},
		{"no name", Profile{Entries: []Entry{good}}, "name is empty"},
		{"upper case name", Profile{Name: "Site", Entries: []Entry{good}}, "lower-case"},
		{"name starts with digit", Profile{Name: "1site", Entries: []Entry{good}}, "starting with a letter"},
		{"name with space", Profile{Name: "my site", Entries: []Entry{good}}, "lower-case"},
		{"long name", Profile{Name: strings.Repeat("a", 33), Entries: []Entry{good}}, "longer than 32"},
		{"no entries", Profile{Name: "x"}, "no entries"},
		{"no dests", Profile{Name: "x", Entries: []Entry{{Ports: []string{"tcp/443"}}}}, "no destinations"},
		{"no ports", Profile{Name: "x", Entries: []Entry{{Dests: []string{"example.com"}}}}, "no ports"},
		{"bad dest", Profile{Name: "x", Entries: []Entry{{Dests: []string{"10.0.0.1/8"}, Ports: []string{"tcp/443"}}}}, "host bits"},
		{"bad port", Profile{Name: "x", Entries: []Entry{{Dests: []string{"example.com"}, Ports: []string{"TLS/5061"}}}}, "not udp, tcp"},
		{"duplicate dest", Profile{Name: "x", Entries: []Entry{{Dests: []string{"Example.com", "example.com."}, Ports: []string{"tcp/443"}}}}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	u := func(a, b uint16) PortRange { return PortRange{UDP, a, b} }
	c := func(a, b uint16) PortRange { return PortRange{TCP, a, b} }
	tests := []struct {
		in   string
		want []PortRange // nil: an error
	}{
		{"udp/5060", []PortRange{u(5060, 5060)}},
		{"tcp/80-90", []PortRange{c(80, 90)}},
		{"TCP/443", []PortRange{c(443, 443)}},
		{" udp/53 ", []PortRange{u(53, 53)}},
		{"udp-tcp/5060", []PortRange{u(5060, 5060), c(5060, 5060)}},
		{"tcp-udp/5061", []PortRange{u(5061, 5061), c(5061, 5061)}},
		{"UDP-TCP/5080-5081", []PortRange{u(5080, 5081), c(5080, 5081)}},
		{"udp/1", []PortRange{u(1, 1)}},
		{"udp/65535", []PortRange{u(65535, 65535)}},
		{"udp/1-65535", []PortRange{u(1, 65535)}},
		{"udp/5060-5060", []PortRange{u(5060, 5060)}},
		{"udp/40000-65000", []PortRange{u(40000, 65000)}},
		{"udp/90-80", nil}, // reversed
		{"udp/0", nil},
		{"udp/0-10", nil},
		{"udp/65536", nil},
		{"udp/10-65536", nil},
		{"udp/-1", nil},
		{"udp/+5", nil},
		{"udp/0x10", nil},
		{"udp/", nil},
		{"udp/5-", nil},
		{"udp/-5", nil},
		{"udp/1-2-3", nil},
		{"udp/5060/6", nil},
		{"udp/ 5060", nil},
		{"udp /5060", nil},
		{"udp/abc", nil},
		{"udp", nil},
		{"5060", nil},
		{"/5060", nil},
		{"", nil},
		{"sctp/5060", nil},
		{"tls/5061", nil}, // the seed's TLS/x is transcribed as tcp/x
		{"udp-udp/5060", nil},
		{"udp,tcp/5060", nil},
	}
	for _, tt := range tests {
		got, err := ParsePort(tt.in)
		if tt.want == nil {
			if err == nil {
				t.Errorf("ParsePort(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePort(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for in, want := range map[PortRange]string{u(5060, 5060): "udp/5060", c(80, 90): "tcp/80-90", {Proto: 47, First: 1, Last: 1}: "47/1"} {
		if got := in.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", in, got, want)
		}
	}
}

func TestParseDest(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		in      string
		ok      bool
		kind    DestKind
		name    string
		prefix  netip.Prefix
		str     string // String(); "" means the input
		comment string
	}{
		{in: "sbc.icvoip.net", ok: true, kind: DestHost, name: "sbc.icvoip.net"},
		{in: "SBC.IcVoip.NET.", ok: true, kind: DestHost, name: "sbc.icvoip.net", str: "sbc.icvoip.net", comment: "lower case, root dot dropped"},
		{in: " uatt.ch ", ok: true, kind: DestHost, name: "uatt.ch", str: "uatt.ch"},
		{in: "_sip._udp.example.com", ok: true, kind: DestHost, name: "_sip._udp.example.com"},
		{in: "localhost", ok: true, kind: DestHost, name: "localhost", comment: "single label accepted"},
		{in: "a-b.example.com", ok: true, kind: DestHost, name: "a-b.example.com"},
		{in: strings.Repeat("a", 63) + ".com", ok: true, kind: DestHost, name: strings.Repeat("a", 63) + ".com"},
		{in: "*.webex.com", ok: true, kind: DestWildcard, name: "webex.com"},
		{in: "*.WBX2.com", ok: true, kind: DestWildcard, name: "wbx2.com", str: "*.wbx2.com"},
		{in: "*.data.logentries.com", ok: true, kind: DestWildcard, name: "data.logentries.com"},
		{in: "10.0.0.1", ok: true, kind: DestPrefix, prefix: pfx("10.0.0.1/32")},
		{in: "10.0.0.1/32", ok: true, kind: DestPrefix, prefix: pfx("10.0.0.1/32"), str: "10.0.0.1"},
		{in: "10.0.0.0/8", ok: true, kind: DestPrefix, prefix: pfx("10.0.0.0/8")},
		{in: "0.0.0.0/0", ok: true, kind: DestPrefix, prefix: pfx("0.0.0.0/0")},
		{in: "::/0", ok: true, kind: DestPrefix, prefix: pfx("::/0")},
		{in: "2001:db8::1", ok: true, kind: DestPrefix, prefix: pfx("2001:db8::1/128")},
		{in: "2001:DB8::/32", ok: true, kind: DestPrefix, prefix: pfx("2001:db8::/32"), str: "2001:db8::/32"},
		{in: "::ffff:192.0.2.1", ok: true, kind: DestPrefix, prefix: pfx("192.0.2.1/32"), str: "192.0.2.1", comment: "mapped address unmapped"},
		{in: "::ffff:192.0.2.0/120", ok: true, kind: DestPrefix, prefix: pfx("192.0.2.0/24"), str: "192.0.2.0/24", comment: "mapped prefix unmapped"},

		{in: "10.0.0.1/8", comment: "host bits"},
		{in: "2001:db8::1/32", comment: "host bits"},
		{in: "10.0.0.0/33"},
		{in: "10.0.0.0/-1"},
		{in: "10.0.0.0/08"},
		{in: "10.0.0.0/"},
		{in: "/8"},
		{in: "fe80::1%eth0", comment: "zoned"},
		{in: "fe80::1%eth0/64", comment: "zoned"},
		{in: "[::1]"},
		{in: "1.2.3"},
		{in: "999.1.1.1"},
		{in: "010.1.1.1"},
		{in: "1.2.3.4.5"},
		{in: "*.com", comment: "wildcard on a TLD"},
		{in: "*"},
		{in: "*."},
		{in: "*.*.example.com"},
		{in: "foo.*.com"},
		{in: "*example.com"},
		{in: "*.1.2.3.4"},
		{in: ""},
		{in: "   "},
		{in: "foo bar.com"},
		{in: "example..com"},
		{in: ".example.com"},
		{in: "example.com.."},
		{in: "-foo.com"},
		{in: "foo-.com"},
		{in: "ex@mple.com"},
		{in: "münchen.de"},
		{in: "http://example.com"},
		{in: "example.com:443"},
		{in: "msftncsi.com/ncsi.txt", comment: "a URL path is not a CIDR"},
		{in: strings.Repeat("a", 64) + ".com", comment: "label too long"},
		{in: strings.Repeat(strings.Repeat("a", 50)+".", 5) + "com", comment: "name too long"},
	}
	for _, tt := range tests {
		d, err := ParseDest(tt.in)
		if !tt.ok {
			if err == nil {
				t.Errorf("ParseDest(%q) = %+v, want an error (%s)", tt.in, d, tt.comment)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDest(%q): %v", tt.in, err)
			continue
		}
		want := Dest{Kind: tt.kind, Name: tt.name, Prefix: tt.prefix}
		if d != want {
			t.Errorf("ParseDest(%q) = %+v, want %+v (%s)", tt.in, d, want, tt.comment)
		}
		str := tt.str
		if str == "" {
			str = tt.in
		}
		if d.String() != str {
			t.Errorf("ParseDest(%q).String() = %q, want %q", tt.in, d.String(), str)
		}
		if again, err := ParseDest(d.String()); err != nil || again != d {
			t.Errorf("ParseDest(%q) does not round-trip through String: %+v, %v", tt.in, again, err)
		}
	}
}

// ---- cross-check against the seed ----

// seedTables is what the seed's tables say, parsed independently of data.go.
type seedTables struct {
	dests        map[string]int                // every host, wildcard, address and CIDR in a table → line
	hostPorts    map[string]map[PortRange]bool // host rows (host or address, then only port cells)
	webexDomains map[string]int                // hosts and wildcards of the Webex URL tables → line
	webexSubnets map[string]int                // CIDRs of the Webex section → line
	webexPorts   map[string]map[PortRange]bool // Webex port table: "any", "media" or "domains" → ports
}

var (
	// UDP-TCP/5060, TLS/5061, tcp/443, UDP/40000-65000, tcp-udp/5061
	seedPortRe = regexp.MustCompile(`(?i)^(udp|tcp|tls|udp-tcp|tcp-udp)/(\d+)(?:-(\d+))?$`)
	// a host name or *.wildcard whose last label starts with a letter
	seedHostRe   = regexp.MustCompile(`^(\*\.)?([a-z0-9_-]+\.)+[a-z][a-z0-9-]*$`)
	footnoteRe   = regexp.MustCompile(`\(\d+\)`)
	dashRe       = regexp.MustCompile(`\s*[-–]\s*`)
	portNumberRe = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)
)

// seedDest turns one token of a table cell into a destination as Dest.String
// writes it. Only CIDRs count outside the first cell, whose other cells are prose.
func seedDest(tok string, firstCell bool) (string, bool) {
	tok = strings.TrimRight(tok, "*") // "20.50.235.0/24*": footnote marker
	if strings.Contains(tok, "/") {
		if p, err := netip.ParsePrefix(tok); err == nil {
			if p.IsSingleIP() {
				return p.Addr().String(), true
			}
			return p.String(), true
		}
		tok, _, _ = strings.Cut(tok, "/") // msftncsi.com/ncsi.txt: its host
	}
	if !firstCell {
		return "", false
	}
	if a, err := netip.ParseAddr(tok); err == nil {
		return a.String(), true
	}
	tok = strings.ToLower(tok)
	return tok, seedHostRe.MatchString(tok)
}

func seedPortToken(tok string) ([]PortRange, error) {
	m := seedPortRe.FindStringSubmatch(tok)
	if m == nil {
		return nil, fmt.Errorf("%q is not a seed port (like UDP-TCP/5060, TLS/5061, tcp/443)", tok)
	}
	return seedPortNumbers(strings.ToLower(m[1]), m[2], m[3])
}

func seedPortNumbers(proto, first, last string) ([]PortRange, error) {
	a, err1 := strconv.Atoi(first)
	b := a
	var err2 error
	if last != "" {
		b, err2 = strconv.Atoi(last)
	}
	if err1 != nil || err2 != nil || a < 1 || b > 65535 || b < a {
		return nil, fmt.Errorf("bad port numbers %s-%s", first, last)
	}
	var protos []Proto
	switch proto {
	case "udp":
		protos = []Proto{UDP}
	case "tcp", "tls":
		protos = []Proto{TCP}
	case "udp-tcp", "tcp-udp", "both":
		protos = []Proto{UDP, TCP}
	}
	var out []PortRange
	for _, p := range protos {
		out = append(out, PortRange{p, uint16(a), uint16(b)})
	}
	return out, nil
}

// webexPortRow parses a row of "Webex Services - Port Numbers and Protocols":
// | 5004 and 9000 | SRTP over UDP | description | devices |, also "123 (1)",
// "50,000 – 53,000". It returns ok false for rows that are not port rows and an
// error for port rows it cannot understand.
func webexPortRow(cells []string) (class string, ports []PortRange, ok bool, err error) {
	s := footnoteRe.ReplaceAllString(cells[0], "")
	s = strings.ReplaceAll(s, ",", "")
	s = dashRe.ReplaceAllString(strings.TrimSpace(s), "-")
	var numbers [][]string
	for _, f := range strings.Fields(s) {
		if f == "and" {
			continue
		}
		m := portNumberRe.FindStringSubmatch(f)
		if m == nil {
			return "", nil, false, nil
		}
		numbers = append(numbers, m)
	}
	if len(numbers) == 0 {
		return "", nil, false, nil
	}
	if len(cells) < 3 {
		return "", nil, true, fmt.Errorf("port row %q has no protocol and description", cells)
	}
	proto := strings.ToUpper(cells[1])
	hasUDP := strings.Contains(proto, "UDP")
	hasTCP := strings.Contains(proto, "TCP") || strings.Contains(proto, "TLS")
	protoName := map[[2]bool]string{{true, false}: "udp", {false, true}: "tcp", {true, true}: "both"}[[2]bool{hasUDP, hasTCP}]
	if protoName == "" {
		return "", nil, true, fmt.Errorf("port row %q: protocol %q is not UDP, TCP or TLS", cells, cells[1])
	}
	for _, m := range numbers {
		prs, err := seedPortNumbers(protoName, m[1], m[2])
		if err != nil {
			return "", nil, true, fmt.Errorf("port row %q: %v", cells, err)
		}
		ports = append(ports, prs...)
	}
	// The table gives no destinations; its descriptions say where they go.
	desc := cells[2]
	switch {
	case strings.Contains(desc, "IP subnets") || strings.Contains(desc, "Video Mesh"):
		class = "media"
	case strings.Contains(desc, "Domains and URLs"):
		class = "domains"
	case strings.Contains(desc, "(NTP)") || strings.Contains(desc, "(DNS)"):
		class = "any"
	default:
		return "", nil, true, fmt.Errorf("port row %q: cannot tell whether it is for media, domains or anywhere", cells)
	}
	return class, ports, true, nil
}

// parseSeed reads the seed's tables: lines with '|'-separated cells. Before the
// Webex section, a row whose first cell is one host or address is a host row
// and must consist of port cells only. In the Webex section (from the first
// table row mentioning Webex) rows are port rows, subnet rows or URL rows.
func parseSeed(text string) (seedTables, error) {
	s := seedTables{
		dests:        map[string]int{},
		hostPorts:    map[string]map[PortRange]bool{},
		webexDomains: map[string]int{},
		webexSubnets: map[string]int{},
		webexPorts:   map[string]map[PortRange]bool{},
	}
	inWebex := false
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if !strings.Contains(line, "|") {
			continue
		}
		if strings.Contains(line, "Webex") {
			inWebex = true
		}
		var cells []string
		for _, c := range strings.Split(line, "|") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		if len(cells) == 0 {
			continue
		}
		first := strings.Fields(cells[0])
		if !inWebex && len(first) == 1 {
			if host, ok := seedDest(first[0], true); ok && !strings.HasPrefix(host, "*.") {
				if len(cells) < 2 {
					return s, fmt.Errorf("line %d: host row %s has no ports", n, host)
				}
				if s.hostPorts[host] == nil {
					s.hostPorts[host] = map[PortRange]bool{}
				}
				for _, c := range cells[1:] {
					for _, tok := range strings.Fields(c) {
						prs, err := seedPortToken(tok)
						if err != nil {
							return s, fmt.Errorf("line %d: host row %s: %v", n, host, err)
						}
						for _, pr := range prs {
							s.hostPorts[host][pr] = true
						}
					}
				}
				s.dests[host] = n
				continue
			}
		}
		if inWebex {
			class, ports, ok, err := webexPortRow(cells)
			if err != nil {
				return s, fmt.Errorf("line %d: %v", n, err)
			}
			if ok {
				if s.webexPorts[class] == nil {
					s.webexPorts[class] = map[PortRange]bool{}
				}
				for _, pr := range ports {
					s.webexPorts[class][pr] = true
				}
				continue
			}
		}
		for j, c := range cells {
			for _, tok := range strings.Fields(c) {
				d, ok := seedDest(tok, j == 0)
				if !ok {
					continue
				}
				s.dests[d] = n
				if !inWebex {
					continue
				}
				if strings.Contains(d, "/") {
					s.webexSubnets[d] = n
				} else {
					s.webexDomains[d] = n
				}
			}
		}
	}
	if !inWebex {
		return s, fmt.Errorf("no Webex section found")
	}
	return s, nil
}

// findSeed walks up from the working directory to the repository root (the
// directory holding go.mod) and returns ../shared/seed/<seedName> from there.
func findSeed(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("no go.mod above the working directory: cannot locate ../shared/seed, seed cross-check skipped")
		}
		dir = parent
	}
	path := filepath.Join(dir, "..", "shared", "seed", seedName)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("seed cross-check skipped: the provider's requirements %s are not available (%v); "+
			"they live outside the repository, in ../shared/seed next to the repository root", seedName, err)
	}
	return path
}

func TestSeedCrossCheck(t *testing.T) {
	text, err := os.ReadFile(findSeed(t))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := parseSeed(string(text))
	if err != nil {
		t.Fatalf("parsing the seed: %v", err)
	}
	if len(seed.hostPorts) == 0 || len(seed.webexSubnets) == 0 || len(seed.webexDomains) == 0 ||
		len(seed.webexPorts["media"]) == 0 || len(seed.webexPorts["domains"]) == 0 || len(seed.webexPorts["any"]) == 0 {
		t.Fatalf("the seed parser found too little (%d host rows, %d subnets, %d domains, ports %v): has the seed's layout changed?",
			len(seed.hostPorts), len(seed.webexSubnets), len(seed.webexDomains), seed.webexPorts)
	}
	t.Logf("seed: %d destinations, %d host rows, %d Webex subnets, %d Webex domains",
		len(seed.dests), len(seed.hostPorts), len(seed.webexSubnets), len(seed.webexDomains))

	all := indexProfiles(t, Profiles()...)
	webex, _ := Lookup("webex")
	wx := indexProfiles(t, webex)
	omitted := map[string]string{}
	for _, o := range webexOmitted {
		omitted[o.Dest] = o.Reason
	}

	t.Run("every seed destination is in a profile", func(t *testing.T) {
		for _, d := range sortedKeys(seed.dests) {
			_, inCatalog := all[d]
			switch reason, isOmitted := omitted[d]; {
			case isOmitted && inCatalog:
				t.Errorf("%s (seed line %d) is in webexOmitted (%s) and in the catalog", d, seed.dests[d], reason)
			case !isOmitted && !inCatalog:
				t.Errorf("%s (seed line %d) is in no profile", d, seed.dests[d])
			}
		}
		for d := range omitted {
			if _, ok := seed.webexDomains[d]; !ok {
				t.Errorf("webexOmitted lists %s, which is not a domain of the seed's Webex tables", d)
			}
		}
	})

	t.Run("every catalog destination is in the seed", func(t *testing.T) {
		for _, d := range sortedKeys(all) {
			if _, ok := seed.dests[d]; !ok && d != "0.0.0.0/0" && d != "::/0" {
				t.Errorf("%s is in the catalog but in no table of the seed", d)
			}
		}
	})

	t.Run("host rows have exactly the seed's ports", func(t *testing.T) {
		for _, host := range sortedKeys(seed.hostPorts) {
			want, got := seed.hostPorts[host], all[host]
			if !maps.Equal(got, want) {
				t.Errorf("%s (seed line %d): catalog ports %v, seed ports %v",
					host, seed.dests[host], sortedPorts(got), sortedPorts(want))
			}
		}
	})

	t.Run("webex", func(t *testing.T) {
		for _, subnet := range sortedKeys(seed.webexSubnets) {
			for pr := range seed.webexPorts["media"] {
				if !wx[subnet][pr] {
					t.Errorf("webex: media subnet %s (seed line %d) lacks %s", subnet, seed.webexSubnets[subnet], pr)
				}
			}
		}
		for _, d := range sortedKeys(seed.webexDomains) {
			if _, ok := omitted[d]; ok {
				continue
			}
			for pr := range seed.webexPorts["domains"] {
				if !wx[d][pr] {
					t.Errorf("webex: domain %s (seed line %d) lacks %s", d, seed.webexDomains[d], pr)
				}
			}
		}
		for _, d := range []string{"0.0.0.0/0", "::/0"} {
			for pr := range seed.webexPorts["any"] {
				if !wx[d][pr] {
					t.Errorf("webex: %s to %s (NTP/DNS rows of the port table) missing", pr, d)
				}
			}
		}
		// Nothing beyond the port table: every webex port is one of its rows'.
		table := map[PortRange]bool{}
		for _, ps := range seed.webexPorts {
			for pr := range ps {
				table[pr] = true
			}
		}
		// except tcp/80 next to tcp/443 for CRL and OCSP (see data.go)
		table[PortRange{TCP, 80, 80}] = true
		for d, ps := range wx {
			for pr := range ps {
				if !table[pr] {
					t.Errorf("webex: %s to %s is in no row of the seed's port table", pr, d)
				}
			}
		}
	})
}

// TestParseSeedSample pins the seed parser on the seed's notations.
func TestParseSeedSample(t *testing.T) {
	sample := `Prose line, ignored: sbc.example.com UDP/1.
Host | SIP | SIP Alternative | (s)RTP |
| sbc.example.net | UDP-TCP/5060 TLS/5061 | UDP/40000-65000 | ||
Yealink: | ||||
rps.example.com | tcp/443 | tcp-udp/5061 | ||
| 192.0.2.7 | tcp/443 |
| Webex Services - Port Numbers and Protocols | |||
| 123 (1) | UDP | Network Time Protocol (NTP) | All |
| 5004 and 9000 | SRTP over UDP | see "IP subnets for Webex media services". | All |
| 50,000 – 53,000 | SRTP over UDP | Video Mesh Node only | Video Mesh Node |
| 443 | TLS | see "Domains and URLs that need to be accessed" | All |
| 20.50.235.0/24* | 66.114.160.0/20 | |
| *.wbx2.com *.ciscospark.com (1) | micro-services, see https://help.example.com/x | All |
| msftncsi.com/ncsi.txt | check | App |
`
	s, err := parseSeed(sample)
	if err != nil {
		t.Fatal(err)
	}
	if got := sortedPorts(s.hostPorts["sbc.example.net"]); !slices.Equal(got, []string{"tcp/5060", "tcp/5061", "udp/40000-65000", "udp/5060"}) {
		t.Errorf("sbc.example.net ports = %v", got)
	}
	if got := sortedPorts(s.hostPorts["rps.example.com"]); !slices.Equal(got, []string{"tcp/443", "tcp/5061", "udp/5061"}) {
		t.Errorf("rps.example.com ports = %v", got)
	}
	if got := sortedPorts(s.hostPorts["192.0.2.7"]); !slices.Equal(got, []string{"tcp/443"}) {
		t.Errorf("192.0.2.7 ports = %v", got)
	}
	if got := sortedKeys(s.webexSubnets); !slices.Equal(got, []string{"20.50.235.0/24", "66.114.160.0/20"}) {
		t.Errorf("subnets = %v", got)
	}
	if got := sortedKeys(s.webexDomains); !slices.Equal(got, []string{"*.ciscospark.com", "*.wbx2.com", "msftncsi.com"}) {
		t.Errorf("domains = %v", got)
	}
	want := map[string][]string{
		"any":     {"udp/123"},
		"media":   {"udp/50000-53000", "udp/5004", "udp/9000"},
		"domains": {"tcp/443"},
	}
	for class, w := range want {
		if got := sortedPorts(s.webexPorts[class]); !slices.Equal(got, w) {
			t.Errorf("webex %s ports = %v, want %v", class, got, w)
		}
	}
	if len(s.dests) != 8 {
		t.Errorf("dests = %v, want 8", sortedKeys(s.dests))
	}
	for _, bad := range []string{
		"| sbc.example.net | UDP-TCP/5060 SCTP/9 |\n| Webex |",
		"| sbc.example.net |\n| Webex |",
		"| Webex | |\n| 443 | GRE | HTTPS (DNS) | All |",
		"| Webex | |\n| 443 | TLS | something else | All |",
		"no tables here",
	} {
		if _, err := parseSeed(bad); err == nil {
			t.Errorf("parseSeed(%q) succeeded, want an error", bad)
		}
	}
}

// indexProfiles maps every destination (as Dest.String writes it) of the
// profiles to the union of the port ranges allowed to it.
func indexProfiles(t *testing.T, ps ...Profile) map[string]map[PortRange]bool {
	t.Helper()
	idx := map[string]map[PortRange]bool{}
	for _, p := range ps {
		for _, e := range p.Entries {
			var ports []PortRange
			for _, s := range e.Ports {
				prs, err := ParsePort(s)
				if err != nil {
					t.Fatalf("profile %s: %v", p.Name, err)
				}
				ports = append(ports, prs...)
			}
			for _, s := range e.Dests {
				d, err := ParseDest(s)
				if err != nil {
					t.Fatalf("profile %s: %v", p.Name, err)
				}
				if idx[d.String()] == nil {
					idx[d.String()] = map[PortRange]bool{}
				}
				for _, pr := range ports {
					idx[d.String()][pr] = true
				}
			}
		}
	}
	return idx
}

func portSet(specs ...string) map[PortRange]bool {
	set := map[PortRange]bool{}
	for _, s := range specs {
		prs, err := ParsePort(s)
		if err != nil {
			panic(err)
		}
		for _, pr := range prs {
			set[pr] = true
		}
	}
	return set
}

func sortedPorts(set map[PortRange]bool) []string {
	var out []string
	for pr := range set {
		out = append(out, pr.String())
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
