package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/voipgw/voipgw/uci"
)

// DHCP configures the DHCPv4 server for the phones (`config dhcp 'dhcp'` and
// `config host` sections). It is enabled when a dhcp section exists and its
// option enabled is not 0.
type DHCP struct {
	Enabled   bool          `json:"enabled"`
	PoolFirst netip.Addr    `json:"pool_first,omitzero"` // from option start (offset in the subnet)
	PoolLast  netip.Addr    `json:"pool_last,omitzero"`  // start + limit - 1, clamped to the subnet
	LeaseTime time.Duration `json:"leasetime"`
	NTP       []netip.Addr  `json:"ntp,omitempty"` // option 42
	// ProvisioningURL is sent as option 66 (Yealink, Gigaset, Polycom read it) and
	// option 160 (Polycom's default "custom" option, read before 66; Yealink reads it too).
	ProvisioningURL string        `json:"provisioning_url,omitempty"`
	Options         []DHCPOption  `json:"options,omitempty"`
	Static          []StaticLease `json:"static,omitempty"`
	LeaseFile       string        `json:"leasefile,omitempty"` // empty: <state dir>/dhcp.leases.json
}

// DHCPOption is a raw option sent to every phone or, with Vendor set, only to phones
// whose vendor class (option 60) contains Vendor (case-insensitive).
type DHCPOption struct {
	Code   uint8  `json:"code"`
	Value  string `json:"value"` // sent as text
	Vendor string `json:"vendor,omitempty"`
}

// StaticLease is a `config host` section: a fixed address for one MAC.
type StaticLease struct {
	Section string     `json:"section"`
	MAC     string     `json:"mac"` // lower case, colon separated
	IP      netip.Addr `json:"ip"`
	Name    string     `json:"name,omitempty"`
}

// Defaults of the DHCP server, as OpenWrt's own for a LAN.
const (
	DefaultDHCPStart = 100
	DefaultDHCPLimit = 150
	DefaultLeaseTime = 12 * time.Hour
)

func init() {
	knownOptions["dhcp"] = []string{"enabled", "start", "limit", "leasetime", "ntp", "provisioning_url", "dhcp_option", "vendor_option", "leasefile"}
	knownOptions["host"] = []string{"mac", "ip", "name"}
}

// Options the server sets itself; a dhcp_option may not override them.
var reservedDHCPOptions = map[uint8]string{
	0: "pad", 1: "subnet mask", 3: "router", 6: "DNS server", 12: "host name", 50: "requested address",
	51: "lease time", 53: "message type", 54: "server identifier", 55: "parameter request list", 255: "end",
}

func (v *validator) dhcpFromUCI(f *uci.File, c *Config) {
	secs := f.SectionsOfType("dhcp")
	hosts := f.SectionsOfType("host")
	if len(secs) == 0 {
		if len(hosts) > 0 {
			v.warn(hosts[0], "", "host sections need a dhcp section; ignored")
		}
		return
	}
	if len(secs) > 1 {
		v.failSection(secs[1].Label(), "only one dhcp section is supported")
		return
	}
	s := secs[0]
	d := DHCP{Enabled: true, LeaseTime: DefaultLeaseTime}
	if b, ok := v.bool(s, "enabled"); ok {
		d.Enabled = b
	}
	if !d.Enabled {
		c.DHCP = d
		return
	}
	subnet := c.Net.Subnet4()
	if !subnet.IsValid() {
		return // the vlan section's error is reported already
	}
	size := uint64(1) << (32 - subnet.Bits())
	start, limit := uint64(DefaultDHCPStart), uint64(DefaultDHCPLimit)
	startSet := false
	if n, ok := v.uint(s, "start", 1, size-2); ok {
		start, startSet = n, true
	}
	if n, ok := v.uint(s, "limit", 1, 1<<24); ok {
		limit = n
	}
	if !startSet && start > size-2 {
		start = 1 // small subnet: OpenWrt's default offset does not fit
	}
	if start > size-2 {
		v.fail(s, "start", strconv.FormatUint(start, 10), fmt.Sprintf("outside the VoIP subnet %s", subnet))
		return
	}
	last := min(start+limit-1, size-2) // clamp to the subnet, as OpenWrt does
	base := subnet.Addr().As4()
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	d.PoolFirst = addr4(b + uint32(start))
	d.PoolLast = addr4(b + uint32(last))
	if val, ok := v.opt(s, "leasetime"); ok {
		lt, err := parseLeaseTime(val)
		if err != nil {
			v.fail(s, "leasetime", val, err.Error())
		}
		d.LeaseTime = lt
	}
	for _, n := range v.list(s, "ntp") {
		a, err := netip.ParseAddr(n)
		if err != nil || !a.Is4() {
			v.fail(s, "ntp", n, "not an IPv4 address (DHCP option 42 carries addresses)")
			continue
		}
		d.NTP = append(d.NTP, a)
	}
	if u, ok := v.opt(s, "provisioning_url"); ok {
		if !strings.Contains(u, "://") || len(u) > 255 || strings.ContainsAny(u, " \t\n") {
			v.fail(s, "provisioning_url", u, "not a URL like https://prov.example.com/ (at most 255 characters)")
		}
		d.ProvisioningURL = u
	}
	for _, o := range v.list(s, "dhcp_option") {
		opt, err := parseDHCPOption(o, false)
		if err != nil {
			v.fail(s, "dhcp_option", o, err.Error())
			continue
		}
		d.Options = append(d.Options, opt)
	}
	for _, o := range v.list(s, "vendor_option") {
		opt, err := parseDHCPOption(o, true)
		if err != nil {
			v.fail(s, "vendor_option", o, err.Error())
			continue
		}
		d.Options = append(d.Options, opt)
	}
	if lf, ok := v.opt(s, "leasefile"); ok {
		if !strings.HasPrefix(lf, "/") {
			v.fail(s, "leasefile", lf, "must be an absolute path")
		}
		d.LeaseFile = lf
	}

	macs, ips := map[string]string{}, map[netip.Addr]string{}
	for _, h := range hosts {
		sl := StaticLease{Section: h.Label()}
		mac := v.required(h, "mac")
		hw, err := net.ParseMAC(mac)
		if mac != "" && (err != nil || len(hw) != 6) {
			v.fail(h, "mac", mac, "not a MAC address like 80:5e:c0:12:34:56")
			continue
		}
		sl.MAC = hw.String()
		ip := v.required(h, "ip")
		a, err := netip.ParseAddr(ip)
		switch {
		case ip == "":
			continue
		case err != nil || !a.Is4():
			v.fail(h, "ip", ip, "not an IPv4 address")
			continue
		case !subnet.Contains(a) || a == subnet.Addr() || a == prefixRangeEnd(subnet):
			v.fail(h, "ip", ip, fmt.Sprintf("not a host address of the VoIP subnet %s", subnet))
			continue
		case a == c.Net.IPv4.Addr():
			v.fail(h, "ip", ip, "is the gateway's own address")
			continue
		}
		sl.IP = a
		if other, dup := macs[sl.MAC]; dup {
			v.fail(h, "mac", mac, "has a static lease in "+other+" already")
		}
		if other, dup := ips[a]; dup {
			v.fail(h, "ip", ip, "is given to another MAC in "+other+" already")
		}
		macs[sl.MAC], ips[a] = h.Label(), h.Label()
		sl.Name, _ = v.opt(h, "name")
		d.Static = append(d.Static, sl)
	}
	c.DHCP = d
}

func addr4(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// parseLeaseTime accepts OpenWrt's forms: 12h, 30m, 3600s, 1d or bare seconds.
func parseLeaseTime(s string) (time.Duration, error) {
	unit := time.Second
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 's':
			num = s[:n-1]
		case 'm':
			unit, num = time.Minute, s[:n-1]
		case 'h':
			unit, num = time.Hour, s[:n-1]
		case 'd':
			unit, num = 24*time.Hour, s[:n-1]
		}
	}
	n, err := strconv.ParseUint(num, 10, 32)
	d := time.Duration(n) * unit
	if err != nil || d < 2*time.Minute || d > 30*24*time.Hour {
		return 0, fmt.Errorf("not a lease time from 2m to 30d (e.g. 12h, 30m, 3600)")
	}
	return d, nil
}

// parseDHCPOption parses "CODE,VALUE" or, for vendor options, "VENDOR,CODE,VALUE".
func parseDHCPOption(s string, vendor bool) (DHCPOption, error) {
	var o DHCPOption
	rest := s
	if vendor {
		var ok bool
		o.Vendor, rest, ok = strings.Cut(s, ",")
		if !ok || o.Vendor == "" {
			return o, fmt.Errorf("want VENDOR,CODE,VALUE (VENDOR is matched in the phone's option 60), e.g. yealink,160,https://prov.example.com/")
		}
	}
	code, val, ok := strings.Cut(rest, ",")
	n, err := strconv.ParseUint(code, 10, 8)
	if !ok || err != nil || n == 0 || n == 255 {
		return o, fmt.Errorf("want CODE,VALUE with CODE 1-254, e.g. 160,https://prov.example.com/")
	}
	if what, reserved := reservedDHCPOptions[uint8(n)]; reserved {
		return o, fmt.Errorf("option %d (%s) is set by voipgw itself", n, what)
	}
	if len(val) > 255 {
		return o, fmt.Errorf("value longer than 255 bytes")
	}
	o.Code, o.Value = uint8(n), val
	return o, nil
}
