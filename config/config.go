// Package config turns a parsed UCI file (/etc/config/voipgw) into voipgw's typed,
// validated configuration. Every error names the UCI section and option and the bad
// value, the way `uci show` prints them (voipgw.voice.vid='5000'); unknown sections
// and options are warnings, never silently ignored.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/uci"
)

// DefaultPath is where OpenWrt keeps the config.
const DefaultPath = "/etc/config/voipgw"

// Config is the effective configuration, defaults filled in.
type Config struct {
	Table    string   `json:"table"`
	WAN      string   `json:"wan"`
	LAN      []string `json:"lan"`
	ICMPRate uint64   `json:"icmp_rate"`
	Net      Network  `json:"network"`
	Profiles []string `json:"profiles"` // enabled catalog profiles, in catalog order
	Allows   []Allow  `json:"allows"`
	DNS      DNS      `json:"dns"`
	Scan     Scan     `json:"scan"`

	// DNS forwarder and DHCP server of `voipgw run` (dns.go, dhcp.go).
	Forwarder Forwarder `json:"dns_forwarder"` // dns.go
	DHCP      DHCP      `json:"dhcp"`          // dhcp.go
	SIP       SIP       `json:"sip"`           // sip.go: SIP ALG and per-flow timeouts
	NAT       NAT       `json:"nat"`           // nat.go: full-cone NAT of the phones' UDP
	Keepalive Keepalive `json:"keepalive"`     // nat.go: RTP keep-alive helper of voipgw run
}

// Network is the VoIP network (the `vlan` section).
type Network struct {
	Section     string       `json:"section"`
	Device      string       `json:"device"`
	VID         int          `json:"vid,omitempty"`
	Ifname      string       `json:"ifname"`
	IPv4        netip.Prefix `json:"ipaddr"`           // gateway address with the subnet's length
	IPv6        netip.Prefix `json:"ip6addr,omitzero"` // optional
	AccessPorts []string     `json:"ports,omitempty"`  // DSA bridge ports made access ports of the VLAN
}

// Subnet4 is the phones' IPv4 subnet.
func (n Network) Subnet4() netip.Prefix { return n.IPv4.Masked() }

// Subnet6 is the phones' IPv6 subnet, or the zero Prefix.
func (n Network) Subnet6() netip.Prefix {
	if !n.IPv6.IsValid() {
		return netip.Prefix{}
	}
	return n.IPv6.Masked()
}

// Allow is one allowlist entry: from a catalog profile or an `allow` section.
type Allow struct {
	Source string              `json:"source"` // "profile cloudoe-sbc" or "allow own-pbx"
	Dests  []catalog.Dest      `json:"dests"`
	Ports  []catalog.PortRange `json:"ports"`
}

// DNS configures name resolution at apply time (and the DNS forwarder later).
type DNS struct {
	Upstream []netip.AddrPort `json:"upstream,omitempty"` // empty: the system's resolv.conf servers
}

// Scan configures port-scan detection on WAN.
type Scan struct {
	Enabled   bool          `json:"enabled"`
	Threshold uint32        `json:"threshold"`
	Window    time.Duration `json:"window"`
	Timeout   time.Duration `json:"timeout"`
}

// Defaults for options the admin leaves out. The scan defaults trip an nmap -T4 SYN
// scan on its 11th probe (10 in 3 s is far above what any phone's platform sends
// unsolicited) and keep the scanner out for an hour.
const (
	DefaultTable         = "voipgw"
	DefaultScanThreshold = 10
	DefaultScanWindow    = 3 * time.Second
	DefaultScanTimeout   = time.Hour
	DefaultICMPRate      = 10
)

// Error is a config error tied to one section and option.
type Error struct {
	Section string // label as uci show prints it: "voice" or "@allow[0]"
	Option  string // empty for section-level errors
	Value   string
	Msg     string
}

func (e *Error) Error() string {
	path := "voipgw." + e.Section
	if e.Option != "" {
		path += "." + e.Option
	}
	if e.Value != "" || e.Option != "" {
		return fmt.Sprintf("%s='%s': %s", path, e.Value, e.Msg)
	}
	return fmt.Sprintf("%s: %s", path, e.Msg)
}

// Warning is something the config says that voipgw does not use.
type Warning struct {
	Section, Option, Msg string
}

func (w Warning) String() string {
	path := "voipgw." + w.Section
	if w.Option != "" {
		path += "." + w.Option
	}
	return path + ": " + w.Msg
}

// Load reads and validates a UCI file.
func Load(path string) (*Config, []Warning, error) {
	f, err := uci.ParseFile(path)
	if err != nil {
		return nil, nil, err
	}
	return FromUCI(f)
}

var knownOptions = map[string][]string{
	"voipgw":  {"wan", "lan", "table", "icmp_rate"},
	"vlan":    {"device", "vid", "ifname", "ipaddr", "ip6addr", "ports"},
	"profile": {"name", "enabled"},
	"allow":   {"name", "dest", "port", "enabled"},
	"dns":     {"upstream"},
	"scan":    {"enabled", "threshold", "window", "timeout"},
}

// FromUCI validates a parsed file. On error nothing of the config is returned:
// the caller keeps what it had.
func FromUCI(f *uci.File) (*Config, []Warning, error) {
	v := &validator{}
	c := &Config{Table: DefaultTable, ICMPRate: DefaultICMPRate,
		Scan: Scan{Enabled: true, Threshold: DefaultScanThreshold, Window: DefaultScanWindow, Timeout: DefaultScanTimeout}}

	for _, s := range f.Sections {
		known, ok := knownOptions[s.Type]
		if !ok {
			v.warn(s, "", fmt.Sprintf("unknown section type %q is ignored", s.Type))
			continue
		}
		for _, o := range s.Options {
			if !slices.Contains(known, o.Name) {
				v.warn(s, o.Name, "unknown option is ignored")
			}
		}
	}

	mains := f.SectionsOfType("voipgw")
	switch len(mains) {
	case 0:
		return nil, nil, &Error{Section: "main", Msg: "missing section: config voipgw 'main' with option wan"}
	case 1:
	default:
		return nil, nil, &Error{Section: mains[1].Label(), Msg: "only one voipgw section is allowed"}
	}
	m := mains[0]
	c.WAN = v.ifname(m, "wan", true)
	for _, l := range v.list(m, "lan") {
		c.LAN = append(c.LAN, v.checkIfname(m, "lan", l))
	}
	if t, ok := v.opt(m, "table"); ok {
		if !nftIdent(t) {
			v.fail(m, "table", t, "not a valid nftables table name (letters, digits, _; at most 31)")
		}
		c.Table = t
	}
	if n, ok := v.uint(m, "icmp_rate", 1, 10000); ok {
		c.ICMPRate = uint64(n)
	}

	vlans := f.SectionsOfType("vlan")
	switch len(vlans) {
	case 0:
		v.failSection("voice", "missing section: config vlan with option device and ipaddr")
	case 1:
		c.Net = v.network(vlans[0])
	default:
		v.failSection(vlans[1].Label(), "only one vlan section (one VoIP network) is supported")
	}

	c.Profiles, c.Allows = v.profiles(f)
	c.Allows = append(c.Allows, v.allows(f)...)
	if dns := f.SectionsOfType("dns"); len(dns) > 0 {
		for _, u := range v.list(dns[0], "upstream") {
			ap, err := parseUpstream(u)
			if err != nil {
				v.fail(dns[0], "upstream", u, err.Error())
				continue
			}
			c.DNS.Upstream = append(c.DNS.Upstream, ap)
		}
	}
	if scans := f.SectionsOfType("scan"); len(scans) > 0 {
		s := scans[0]
		if b, ok := v.bool(s, "enabled"); ok {
			c.Scan.Enabled = b
		}
		if n, ok := v.uint(s, "threshold", 2, 10000); ok {
			c.Scan.Threshold = uint32(n)
		}
		if n, ok := v.uint(s, "window", 1, 3600); ok {
			c.Scan.Window = time.Duration(n) * time.Second
		}
		if n, ok := v.uint(s, "timeout", 1, 7*86400); ok {
			c.Scan.Timeout = time.Duration(n) * time.Second
		}
	}

	v.forwarderFromUCI(f, c) // dns.go
	v.dhcpFromUCI(f, c)      // dhcp.go
	v.sipFromUCI(f, c)       // sip.go
	v.natFromUCI(f, c)       // nat.go
	if v.err == nil {
		v.crossCheck(c, m, vlans)
	}
	if v.err != nil {
		return nil, v.warnings, v.err
	}
	return c, v.warnings, nil
}

// Hash identifies the effective config; apply records it in the kernel and status shows it.
func (c *Config) Hash() string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// nftIdent: ^[a-zA-Z][a-zA-Z0-9_]{0,30}$, checked by hand: this and ifnameOK were
// the binary's only regular expressions (regexp costs ~120 KB; BENCHMARKS.md).
func nftIdent(s string) bool {
	if len(s) == 0 || len(s) > 31 || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

type validator struct {
	err      error // the first error: one clear message
	warnings []Warning
}

func (v *validator) fail(s *uci.Section, opt, val, msg string) {
	if v.err == nil {
		v.err = &Error{Section: s.Label(), Option: opt, Value: val, Msg: msg}
	}
}

func (v *validator) failSection(label, msg string) {
	if v.err == nil {
		v.err = &Error{Section: label, Msg: msg}
	}
}

func (v *validator) warn(s *uci.Section, opt, msg string) {
	v.warnings = append(v.warnings, Warning{Section: s.Label(), Option: opt, Msg: msg})
}

// opt returns a single-valued option; a list where an option is expected is an error.
func (v *validator) opt(s *uci.Section, name string) (string, bool) {
	o, ok := s.Get(name)
	if !ok {
		return "", false
	}
	if o.IsList {
		v.fail(s, name, strings.Join(o.Values, " "), "expected an option, not a list")
		return "", false
	}
	return o.Values[0], true
}

// list accepts both `list x` and a single `option x` (as OpenWrt's own tools do).
func (v *validator) list(s *uci.Section, name string) []string {
	o, ok := s.Get(name)
	if !ok {
		return nil
	}
	return o.Values
}

func (v *validator) required(s *uci.Section, name string) string {
	val, ok := v.opt(s, name)
	if !ok && v.err == nil {
		v.fail(s, name, "", "required option is missing")
	}
	return val
}

func (v *validator) bool(s *uci.Section, name string) (bool, bool) {
	val, ok := v.opt(s, name)
	if !ok {
		return false, false
	}
	switch strings.ToLower(val) {
	case "1", "yes", "on", "true", "enabled":
		return true, true
	case "0", "no", "off", "false", "disabled":
		return false, true
	}
	v.fail(s, name, val, "not a boolean (use 1 or 0)")
	return false, false
}

func (v *validator) uint(s *uci.Section, name string, lo, hi uint64) (uint64, bool) {
	val, ok := v.opt(s, name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(val, 10, 64)
	if err != nil || n < lo || n > hi {
		v.fail(s, name, val, fmt.Sprintf("not a whole number from %d to %d", lo, hi))
		return 0, false
	}
	return n, true
}

// ifnameOK: ^[a-zA-Z0-9_.@-]{1,15}$.
func ifnameOK(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !isDigit(c) && !strings.ContainsRune("_.@-", rune(c)) {
			return false
		}
	}
	return true
}

func (v *validator) checkIfname(s *uci.Section, opt, val string) string {
	if !ifnameOK(val) || val == "." || val == ".." {
		v.fail(s, opt, val, "not a valid interface name (1-15 characters: letters, digits, . _ - @)")
	}
	return val
}

func (v *validator) ifname(s *uci.Section, opt string, required bool) string {
	var val string
	if required {
		val = v.required(s, opt)
	} else {
		val, _ = v.opt(s, opt)
	}
	if val == "" {
		return ""
	}
	return v.checkIfname(s, opt, val)
}

func (v *validator) network(s *uci.Section) Network {
	n := Network{Section: s.Label()}
	n.Device = v.ifname(s, "device", true)
	if vid, ok := v.uint(s, "vid", 1, 4094); ok {
		n.VID = int(vid)
	}
	n.Ifname = v.ifname(s, "ifname", false)
	if n.Ifname == "" {
		n.Ifname = n.Device
		if n.VID != 0 {
			n.Ifname = fmt.Sprintf("%s.%d", n.Device, n.VID)
			if len(n.Ifname) > 15 {
				v.fail(s, "device", n.Device, fmt.Sprintf("the default interface name %s is longer than 15 characters; set option ifname", n.Ifname))
			}
		}
	}
	if val := v.required(s, "ipaddr"); val != "" {
		p, err := netip.ParsePrefix(val)
		switch {
		case err != nil:
			v.fail(s, "ipaddr", val, "not an IPv4 address with prefix length, e.g. 192.168.20.1/24")
		case !p.Addr().Is4():
			v.fail(s, "ipaddr", val, "must be IPv4 (use ip6addr for IPv6)")
		case p.Bits() < 8 || p.Bits() > 30:
			v.fail(s, "ipaddr", val, "prefix length must be 8-30 so the subnet holds phones")
		case p.Addr() == p.Masked().Addr() || p.Addr() == prefixRangeEnd(p):
			v.fail(s, "ipaddr", val, "is the subnet's network or broadcast address; give the gateway's own address")
		default:
			n.IPv4 = p
		}
	}
	if val, ok := v.opt(s, "ip6addr"); ok {
		p, err := netip.ParsePrefix(val)
		switch {
		case err != nil || !p.Addr().Is6() || p.Addr().Is4In6():
			v.fail(s, "ip6addr", val, "not an IPv6 address with prefix length, e.g. fd00:20::1/64")
		case p.Bits() < 48 || p.Bits() > 64:
			v.fail(s, "ip6addr", val, "prefix length must be 48-64")
		case p.Addr() == p.Masked().Addr():
			v.fail(s, "ip6addr", val, "is the subnet's anycast address; give the gateway's own address")
		default:
			n.IPv6 = p
		}
	}
	for _, p := range v.list(s, "ports") {
		n.AccessPorts = append(n.AccessPorts, v.checkIfname(s, "ports", p))
	}
	if len(n.AccessPorts) > 0 && n.VID == 0 {
		v.fail(s, "ports", strings.Join(n.AccessPorts, " "), "access ports need option vid")
	}
	return n
}

func prefixRangeEnd(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (v *validator) profiles(f *uci.File) ([]string, []Allow) {
	enabled := map[string]bool{}
	for _, name := range catalog.DefaultProfiles() {
		enabled[name] = true
	}
	for _, s := range f.SectionsOfType("profile") {
		name := v.required(s, "name")
		if name == "" {
			continue
		}
		if _, ok := catalog.Lookup(name); !ok {
			var names []string
			for _, p := range catalog.Profiles() {
				names = append(names, p.Name)
			}
			v.fail(s, "name", name, "no such profile; built-in profiles: "+strings.Join(names, ", "))
			continue
		}
		on := true
		if b, ok := v.bool(s, "enabled"); ok {
			on = b
		}
		enabled[name] = on
	}
	var names []string
	var allows []Allow
	for _, p := range catalog.Profiles() {
		if !enabled[p.Name] {
			continue
		}
		names = append(names, p.Name)
		for _, e := range p.Entries {
			a := Allow{Source: "profile " + p.Name}
			for _, d := range e.Dests {
				pd, err := catalog.ParseDest(d)
				if err != nil {
					v.failSection("@profile", fmt.Sprintf("built-in profile %s: %v", p.Name, err))
					continue
				}
				a.Dests = append(a.Dests, pd)
			}
			for _, ps := range e.Ports {
				pr, err := catalog.ParsePort(ps)
				if err != nil {
					v.failSection("@profile", fmt.Sprintf("built-in profile %s: %v", p.Name, err))
					continue
				}
				a.Ports = append(a.Ports, pr...)
			}
			allows = append(allows, a)
		}
	}
	return names, allows
}

func (v *validator) allows(f *uci.File) []Allow {
	var out []Allow
	for _, s := range f.SectionsOfType("allow") {
		if b, ok := v.bool(s, "enabled"); ok && !b {
			continue
		}
		name, _ := v.opt(s, "name")
		if name == "" {
			name = s.Label()
		}
		a := Allow{Source: "allow " + name}
		dests := v.list(s, "dest")
		if len(dests) == 0 {
			v.fail(s, "dest", "", "required: at least one list dest (host name, *.domain, address or CIDR)")
		}
		for _, d := range dests {
			pd, err := catalog.ParseDest(d)
			if err != nil {
				v.fail(s, "dest", d, err.Error())
				continue
			}
			if pd.Kind == catalog.DestPrefix && pd.Prefix.Bits() == 0 {
				v.fail(s, "dest", d, "allowing the whole internet defeats the allowlist; list the provider's hosts")
			}
			a.Dests = append(a.Dests, pd)
		}
		ports := v.list(s, "port")
		if len(ports) == 0 {
			v.fail(s, "port", "", "required: at least one list port (udp/5060, tcp/5061, udp/10000-20000)")
		}
		for _, p := range ports {
			pr, err := catalog.ParsePort(p)
			if err != nil {
				v.fail(s, "port", p, err.Error())
				continue
			}
			a.Ports = append(a.Ports, pr...)
		}
		out = append(out, a)
	}
	return out
}

func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, errors.New("not an IP address or IP:port (e.g. 192.0.2.53 or [2001:db8::53]:53)")
	}
	return netip.AddrPortFrom(a, 53), nil
}

// crossCheck validates what depends on several options at once.
func (v *validator) crossCheck(c *Config, main *uci.Section, vlans []*uci.Section) {
	vs := vlans[0]
	// Without vid the interface is the device itself: name the option the admin wrote.
	if c.Net.VID == 0 && c.Net.Device == c.WAN {
		v.fail(vs, "device", c.Net.Device, "the VoIP port cannot be the WAN device")
	}
	if c.Net.Ifname == c.WAN {
		v.fail(vs, "ifname", c.Net.Ifname, "the VoIP interface cannot be the WAN device")
	}
	for _, l := range c.LAN {
		if l == c.Net.Ifname || (c.Net.VID == 0 && l == c.Net.Device) {
			v.fail(main, "lan", l, "is the VoIP interface itself; list only the data LAN devices")
		}
		if l == c.WAN {
			v.fail(main, "lan", l, "is the WAN device")
		}
	}
}
