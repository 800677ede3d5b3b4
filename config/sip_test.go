package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSIPOptions(t *testing.T) {
	c, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.SIP.ALG || c.SIP.SIPTimeout != DefaultSIPTimeout || c.SIP.RTPTimeout != DefaultRTPTimeout ||
		!slices.Equal(c.SIP.SIPPorts, DefaultSIPPorts) || !slices.Equal(c.SIP.RTPPorts, DefaultRTPPorts) {
		t.Errorf("defaults = %+v", c.SIP)
	}
	c, err = parse(t, "config sip 'sip'\n\toption alg '1'\n\tlist sip_port '5060'\n\tlist sip_port '5070-5071'\n\toption sip_timeout '600'\n\tlist rtp_port '10000-20000 30000'\n\toption rtp_timeout '90'\n")
	if err != nil {
		t.Fatal(err)
	}
	want := SIP{ALG: true, SIPPorts: []PortSpan{{5060, 5060}, {5070, 5071}}, SIPTimeout: 600 * time.Second,
		RTPPorts: []PortSpan{{10000, 20000}, {30000, 30000}}, RTPTimeout: 90 * time.Second}
	if c.SIP.ALG != want.ALG || c.SIP.SIPTimeout != want.SIPTimeout || c.SIP.RTPTimeout != want.RTPTimeout ||
		!slices.Equal(c.SIP.SIPPorts, want.SIPPorts) || !slices.Equal(c.SIP.RTPPorts, want.RTPPorts) {
		t.Errorf("got %+v, want %+v", c.SIP, want)
	}
	for _, tc := range []struct{ extra, want string }{
		{"config sip 'sip'\n\toption alg 'maybe'\n", "voipgw.sip.alg='maybe': not a boolean"},
		{"config sip 'sip'\n\toption sip_timeout '10'\n", "voipgw.sip.sip_timeout='10': not a whole number from 30 to 86400"},
		{"config sip 'sip'\n\tlist sip_port '5060-5000'\n", "voipgw.sip.sip_port='5060-5000': not a UDP port or range"},
		{"config sip 'sip'\n\tlist rtp_port '0'\n", "voipgw.sip.rtp_port='0': not a UDP port"},
		{"config sip 'sip'\n\tlist rtp_port '5000-6000'\n", "voipgw.sip.rtp_port='5000-6000': overlaps sip_port 5060"},
		{"config sip 'a'\n\nconfig sip 'b'\n", "voipgw.b: only one sip section"},
	} {
		_, err := parse(t, tc.extra)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.extra, err, tc.want)
		}
	}
}
