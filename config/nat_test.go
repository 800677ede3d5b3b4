package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNATOptions(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.NAT.Enabled || c.NAT.Filtering != FilteringProvider || c.NAT.Timeout != DefaultNATTimeout || c.NAT.Ports != nil || c.NAT.Remap != DefaultNATRemap {
		t.Errorf("nat defaults = %+v", c.NAT)
	}
	if !c.Keepalive.Enabled || c.Keepalive.Interval != 15*time.Second || !slices.Equal(c.Keepalive.Ports, DefaultKeepalivePorts) ||
		c.Keepalive.MaxIdle != DefaultKeepaliveMaxIdle || c.Keepalive.MaxFlows != DefaultKeepaliveMaxFlows {
		t.Errorf("keepalive defaults = %+v", c.Keepalive)
	}
	c, err = parse(t, "config nat 'nat'\n\tlist port 'udp/5060'\n\tlist port 'udp/10000-20000 30000'\n\toption filtering 'endpoint-independent'\n\toption timeout '60'\n\toption remap_port '30000-30999'\n"+
		"config keepalive 'keepalive'\n\toption interval '5'\n\tlist port 'udp/16384-32767'\n\toption max_idle '600'\n\toption max_flows '64'\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []PortSpan{{5060, 5060}, {10000, 20000}, {30000, 30000}}; !slices.Equal(c.NAT.Ports, want) ||
		c.NAT.Filtering != FilteringEndpointIndependent || c.NAT.Timeout != time.Minute || c.NAT.Remap != (PortSpan{30000, 30999}) {
		t.Errorf("nat = %+v", c.NAT)
	}
	if k := c.Keepalive; k.Interval != 5*time.Second || !slices.Equal(k.Ports, []PortSpan{{16384, 32767}}) || k.MaxIdle != 600*time.Second || k.MaxFlows != 64 {
		t.Errorf("keepalive = %+v", k)
	}
	for _, tc := range []struct{ extra, want string }{
		{"config nat 'nat'\n\toption filtering 'full'\n", "voipgw.nat.filtering='full': use provider"},
		{"config nat 'nat'\n\tlist port 'tcp/5060'\n", "voipgw.nat.port='tcp/5060': only UDP ports"},
		{"config nat 'nat'\n\tlist port 'udp/99999'\n", "voipgw.nat.port='udp/99999'"},
		{"config nat 'nat'\n\toption timeout '1'\n", "voipgw.nat.timeout='1': not a whole number from 5 to 86400"},
		{"config nat 'nat'\n\toption enabled 'perhaps'\n", "voipgw.nat.enabled='perhaps': not a boolean"},
		{"config keepalive 'keepalive'\n\toption interval '0'\n", "voipgw.keepalive.interval='0'"},
		{"config keepalive 'keepalive'\n\toption interval '30'\n\toption max_idle '10'\n", "voipgw.keepalive.max_idle='10': must not be below interval"},
		{"config nat 'a'\n\nconfig nat 'b'\n", "voipgw.b: only one nat section"},
		{"config nat 'nat'\n\toption remap_port '80-1079'\n", "voipgw.nat.remap_port='80-1079': must not reach below 1024"},
		{"config nat 'nat'\n\toption remap_port '20000-20010'\n", "voipgw.nat.remap_port='20000-20010': must be one range of 64 to 16384 ports"},
		{"config nat 'nat'\n\toption remap_port '20000-40000'\n", "voipgw.nat.remap_port='20000-40000': must be one range of 64 to 16384 ports"},
		{"config nat 'nat'\n\toption remap_port '20000-20999 30000-30999'\n", "voipgw.nat.remap_port='20000-20999 30000-30999': must be one range"},
		{"config nat 'nat'\n\toption remap_port 'tcp/20000-20999'\n", "voipgw.nat.remap_port='tcp/20000-20999': only UDP ports"},
	} {
		_, err := parse(t, tc.extra)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.extra, err, tc.want)
		}
	}
}
