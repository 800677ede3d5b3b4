package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/voipgw/voipgw/uci"
)

const baseUCI = `config voipgw 'main'
	option wan 'wan0'

config vlan 'voice'
	option device 'voip0'
	option ipaddr '192.0.2.1/25'
`

func parse(t *testing.T, extra string) (*Config, error) {
	t.Helper()
	f, err := uci.Parse("voipgw", strings.NewReader(baseUCI+extra))
	if err != nil {
		t.Fatalf("uci: %v", err)
	}
	c, _, err := FromUCI(f)
	return c, err
}

func TestForwarderOptions(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Forwarder{Enabled: true, TTLFloor: DefaultTTLFloor, TTLMax: DefaultTTLMax, LearnedMax: DefaultLearnedMax}); c.Forwarder != want {
		t.Errorf("defaults = %+v, want %+v", c.Forwarder, want)
	}
	c, err = parse(t, "config dns 'dns'\n\toption forwarder '0'\n\toption ttl_floor '2'\n\toption ttl_max '60'\n\toption learned_max '32'\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Forwarder{Enabled: false, TTLFloor: 2 * time.Second, TTLMax: time.Minute, LearnedMax: 32}); c.Forwarder != want {
		t.Errorf("got %+v, want %+v", c.Forwarder, want)
	}
	for _, tc := range []struct{ extra, want string }{
		{"config dns 'dns'\n\toption ttl_floor '0'\n", "voipgw.dns.ttl_floor='0': not a whole number"},
		{"config dns 'dns'\n\toption ttl_floor '600'\n\toption ttl_max '60'\n", "voipgw.dns.ttl_max='60': must not be below ttl_floor"},
		{"config dns 'dns'\n\toption learned_max '3'\n", "voipgw.dns.learned_max='3'"},
		{"config dns 'dns'\n\tlist upstream '192.0.2.1'\n", "voipgw.dns.upstream='192.0.2.1:53': is the DNS forwarder itself"},
		{"config dns 'dns'\n\toption forwarder 'maybe'\n", "voipgw.dns.forwarder='maybe': not a boolean"},
	} {
		_, err := parse(t, tc.extra)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.extra, err, tc.want)
		}
	}
	// With the forwarder off, the gateway address as upstream is no loop.
	if _, err := parse(t, "config dns 'dns'\n\toption forwarder '0'\n\tlist upstream '192.0.2.1'\n"); err != nil {
		t.Errorf("forwarder off: %v", err)
	}
}

func TestDHCPOptions(t *testing.T) {
	c, err := parse(t, "")
	if err != nil || c.DHCP.Enabled {
		t.Fatalf("no dhcp section: enabled %v, err %v", c != nil && c.DHCP.Enabled, err)
	}
	c, err = parse(t, `config dhcp 'dhcp'
	option start '10'
	option limit '200'
	option leasetime '1h'
	list ntp '192.0.2.1'
	option provisioning_url 'https://prov.example.com/cfg/'
	list dhcp_option '2,3600'
	list vendor_option 'yealink,160,https://y.example.com/'

config host
	option mac '80:5E:C0:00:00:01'
	option ip '192.0.2.50'
	option name 'reception'
`)
	if err != nil {
		t.Fatal(err)
	}
	d := c.DHCP
	// A /25 holds hosts .1-.126: the pool is clamped to the subnet as OpenWrt does.
	if !d.Enabled || d.PoolFirst != netip.MustParseAddr("192.0.2.10") || d.PoolLast != netip.MustParseAddr("192.0.2.126") {
		t.Errorf("pool %v-%v enabled %v", d.PoolFirst, d.PoolLast, d.Enabled)
	}
	if d.LeaseTime != time.Hour || len(d.NTP) != 1 || d.ProvisioningURL != "https://prov.example.com/cfg/" {
		t.Errorf("dhcp = %+v", d)
	}
	if len(d.Options) != 2 || d.Options[0] != (DHCPOption{Code: 2, Value: "3600"}) ||
		d.Options[1] != (DHCPOption{Code: 160, Value: "https://y.example.com/", Vendor: "yealink"}) {
		t.Errorf("options = %+v", d.Options)
	}
	if len(d.Static) != 1 || d.Static[0].MAC != "80:5e:c0:00:00:01" || d.Static[0].IP != netip.MustParseAddr("192.0.2.50") || d.Static[0].Name != "reception" {
		t.Errorf("static = %+v", d.Static)
	}
	// The default start (100) fits a /25; the default limit is clamped.
	c, err = parse(t, "config dhcp 'dhcp'\n")
	if err != nil || c.DHCP.PoolFirst != netip.MustParseAddr("192.0.2.100") || c.DHCP.PoolLast != netip.MustParseAddr("192.0.2.126") {
		t.Errorf("defaults: %v-%v %v", c.DHCP.PoolFirst, c.DHCP.PoolLast, err)
	}

	for _, tc := range []struct{ extra, want string }{
		{"config dhcp 'dhcp'\n\toption start '127'\n", "voipgw.dhcp.start='127': not a whole number from 1 to 126"},
		{"config dhcp 'dhcp'\n\toption leasetime '10s'\n", "voipgw.dhcp.leasetime='10s'"},
		{"config dhcp 'dhcp'\n\tlist ntp 'pool.ntp.org'\n", "voipgw.dhcp.ntp='pool.ntp.org'"},
		{"config dhcp 'dhcp'\n\tlist dhcp_option '6,192.0.2.9'\n", "voipgw.dhcp.dhcp_option='6,192.0.2.9': option 6 (DNS server) is set by voipgw"},
		{"config dhcp 'dhcp'\n\tlist vendor_option '160,x'\n", "voipgw.dhcp.vendor_option='160,x'"},
		{"config dhcp 'dhcp'\n\toption provisioning_url 'prov.example.com'\n", "voipgw.dhcp.provisioning_url='prov.example.com'"},
		{"config dhcp 'dhcp'\nconfig host\n\toption mac 'nope'\n\toption ip '192.0.2.5'\n", "voipgw.@host[0].mac='nope'"},
		{"config dhcp 'dhcp'\nconfig host\n\toption mac '00:04:f2:00:00:01'\n\toption ip '192.0.2.200'\n", "voipgw.@host[0].ip='192.0.2.200': not a host address of the VoIP subnet"},
		{"config dhcp 'dhcp'\nconfig host\n\toption mac '00:04:f2:00:00:01'\n\toption ip '192.0.2.1'\n", "is the gateway's own address"},
		{"config dhcp 'dhcp'\nconfig host\n\toption mac '00:04:f2:00:00:01'\n\toption ip '192.0.2.5'\nconfig host\n\toption mac '00:04:f2:00:00:02'\n\toption ip '192.0.2.5'\n",
			"voipgw.@host[1].ip='192.0.2.5': is given to another MAC in @host[0]"},
	} {
		_, err := parse(t, tc.extra)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.extra, err, tc.want)
		}
	}
}
