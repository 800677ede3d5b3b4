package main

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/media/stun"
)

// stunAllow lets the phones reach both of the lab STUN server's addresses and
// ports; it also puts both addresses in the platform set, which is what
// filtering provider lets in.
const stunAllow = `
config allow 'stun'
	list dest '203.0.113.20'
	list dest '203.0.113.21'
	list port 'udp/3478-3479'
`

// The RFC 5780 self-test from a phone's namespace, through the gateway as each
// nat setting configures it.
func TestSTUNSelfTestInLab(t *testing.T) {
	l, gw := newLab(t)
	if err := l.StartSTUN([2]netip.Addr{lab.Platform, lab.STUNAlt}); err != nil {
		t.Fatal(err)
	}
	server := ap(lab.Platform, lab.STUNPorts[0]).String()
	for _, tc := range []struct {
		name     string
		nat      string
		verdict  string
		fullCone bool
	}{
		{"full cone", "\nconfig nat 'nat'\n\toption filtering 'endpoint-independent'\n", "EIM + EIF: full cone NAT", true},
		// Both STUN addresses are allowlisted, so provider filtering lets the
		// alternate address's answers in: the test cannot tell it from EIF.
		{"provider filtering, both addresses allowlisted", "\nconfig nat 'nat'\n\toption filtering 'provider'\n", "EIM + EIF: full cone NAT", true},
		// Only the primary address allowlisted: the phone cannot reach the alternate
		// (mapping unknown), and provider filtering lets in the primary address from
		// any port but not the alternate address: address-dependent filtering.
		{"provider filtering, only the primary allowlisted", "\nconfig nat 'nat'\n\toption filtering 'provider'\n", "?M + ADF: address-restricted cone NAT", false},
		// Plain masquerade keeps the mapping while conntrack entries live (EIM, the
		// note's trap 1) but lets only the exact remote endpoint answer.
		{"masquerade", "\nconfig nat 'nat'\n\toption enabled '0'\n", "EIM + APDF: port-restricted cone NAT", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allow := stunAllow
			if strings.Contains(tc.name, "only the primary") {
				allow = strings.Replace(allow, "\tlist dest '203.0.113.21'\n", "", 1)
			}
			if err := os.WriteFile(gw.config, []byte(lab.Config(allow+tc.nat)), 0o644); err != nil {
				t.Fatal(err)
			}
			gw.mustRun("apply")
			flushConntrack(t, l.GW)
			out, err := l.Phone1.Run(voipgwBin, "diagnose", "--stun", server)
			t.Logf("voipgw diagnose --stun %s:\n%s", server, out)
			if !strings.Contains(out, "\n"+tc.verdict+"\n") {
				t.Errorf("verdict: want %q", tc.verdict)
			}
			if tc.fullCone != (err == nil) {
				t.Errorf("exit status: %v, want success %v", err, tc.fullCone)
			}
			if hasRemedy := strings.Contains(out, stun.Remedy); hasRemedy == tc.fullCone {
				t.Errorf("remedy printed %v, want %v", hasRemedy, !tc.fullCone)
			}
		})
	}
}
