package main

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/voipgw/voipgw/lab"
)

// coturn's turnutils_natdiscovery (RFC 5780) against coturn's turnserver judges
// the mapping and filtering, with both filtering settings. Its mapping test runs
// from the given local port, so it judges a preserved and a remapped endpoint;
// its filtering test always opens a new ephemeral port (a preserved endpoint), so
// the remapped endpoint's filtering is judged by TestFullConeFirstPacketInLab and
// TestFullConeRemappedEndpointInLab.
func TestFullConeNATDiscoveryInLab(t *testing.T) {
	if _, err := exec.LookPath("turnutils_natdiscovery"); err != nil {
		t.Skip("skipping: coturn's turnutils_natdiscovery is not installed (apt-get install coturn)")
	}
	l, gw := newLab(t)
	// The STUN server's two addresses are allowlisted (stunAllow), so they are
	// platform addresses and filtering provider lets both in too.
	extra := stunAllow
	srv, err := l.StartCoturn(lab.Platform, lab.STUNAlt, 3478)
	if err != nil {
		t.Fatal(err)
	}
	const port = 41090
	// Phone2 holds the port first, so phone1's natdiscovery runs from a remapped endpoint.
	for _, mode := range []string{natEIF, "\nconfig nat 'nat'\n\toption filtering 'provider'\n"} {
		writeConfig(t, gw, mode+extra)
		gw.mustRun("apply")
		flushConntrack(t, l.GW)
		for _, c := range []struct {
			name string
			ns   *lab.NS
			addr netip.Addr
		}{{"preserved", l.Phone2, lab.Phone2Addr.Addr()}, {"remapped", l.Phone1, lab.Phone1Addr.Addr()}} {
			out, err := srv.NATDiscovery(c.ns, ap(c.addr, port))
			if err != nil {
				t.Fatalf("%s: %v\nturnserver log:\n%s", c.name, err, srv.Log())
			}
			t.Logf("%s %s:\n%s", strings.TrimSpace(mode), c.name, out)
			// The mapping test's first reflexive address is this endpoint's mapping.
			_, rest, _ := strings.Cut(out, "UDP reflexive addr: ")
			m, err := netip.ParseAddrPort(strings.Fields(rest + " x")[0])
			if err != nil || m.Addr() != lab.WANGateway.Addr() || (m.Port() == port) != (c.name == "preserved") {
				t.Errorf("%s: natdiscovery's mapping %q (%v), want the WAN address and port %d only if preserved", c.name, m, err, port)
			}
			if strings.Contains(out, lab.NATNoNAT) {
				t.Fatalf("%s: natdiscovery saw no NAT at all:\n%s", c.name, out)
			}
			for _, want := range []string{lab.NATEIM, lab.NATEIF} {
				if !strings.Contains(out, want) {
					t.Errorf("%s, %s endpoint: natdiscovery did not find %q:\n%s", strings.TrimSpace(mode), c.name, want, out)
				}
			}
		}
	}
}
