package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ti-mo/conntrack"

	"github.com/voipgw/voipgw/lab"
)

// foreignFW4 attaches the sip helper to udp/5060 from the VoIP interface the way
// OpenWrt's firewall4 does for a zone with automatic helpers.
const foreignFW4 = `table inet fw4 {
	ct helper sip {
		type "sip" protocol udp;
	}
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname "voip0" jump helper_voice comment "!fw4: Handle voice IPv4/IPv6 helper assignment"
	}
	chain helper_voice {
		meta l4proto udp udp dport 5060 ct helper set "sip" comment "!fw4: SIP VoIP connection tracking"
	}
}
`

// gwFlows dumps the gateway's conntrack table.
func gwFlows(t *testing.T, l *lab.Lab) []conntrack.Flow {
	t.Helper()
	var flows []conntrack.Flow
	if err := l.GW.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		flows, err = c.Dump(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return flows
}

func phoneFlowsToEcho(t *testing.T, l *lab.Lab) []conntrack.Flow {
	var out []conntrack.Flow
	for _, f := range gwFlows(t, l) {
		if f.TupleOrig.IP.SourceAddress == lab.Phone1Addr.Addr() && f.TupleOrig.IP.DestinationAddress == lab.SIPEcho &&
			f.TupleOrig.Proto.Protocol == 17 && f.TupleOrig.Proto.DestinationPort == 5060 {
			out = append(out, f)
		}
	}
	return out
}

func diagnose(t *testing.T, l *lab.Lab) (string, error) {
	t.Helper()
	return l.Phone1.Run(voipgwBin, "diagnose", "--sip-echo", netip.AddrPortFrom(lab.SIPEcho, 5060).String())
}

func TestSIPALGInLab(t *testing.T) {
	l, gw := newLab(t)
	if err := l.StartSIPEcho(); err != nil {
		t.Fatal(err)
	}
	load := func() {
		cmd := strings.NewReader(foreignFW4)
		if err := l.GW.Do(func() error { return runStdin(cmd, "nft", "-f", "-") }); err != nil {
			t.Fatalf("load the foreign table: %v", err)
		}
	}
	load()
	foreignBefore, _ := l.GW.Run("nft", "list", "table", "inet", "fw4")

	setConfig := func(extra string) {
		if err := os.WriteFile(gw.config, []byte(lab.Config(extra)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("with sip.alg 1 the probe sees the ALG's rewrites through the NAT", func(t *testing.T) {
		setConfig("\nconfig sip 'sip'\n\toption alg '1'\n")
		gw.mustRun("apply")
		out, err := diagnose(t, l)
		t.Logf("diagnose:\n%s", out)
		if err == nil || !strings.Contains(out, "SIP ALG rewrote") || !strings.Contains(out, "Via sent-by") || !strings.Contains(out, "Contact") || !strings.Contains(out, "SDP c=") {
			t.Errorf("the probe did not see the ALG's rewrites (err %v)", err)
		}
		if !strings.Contains(out, "tcp OPTIONS") {
			t.Errorf("no TCP results")
		}
		helper := 0
		for _, f := range phoneFlowsToEcho(t, l) {
			if f.Helper.Name == "sip" {
				helper++
			}
		}
		if helper == 0 {
			t.Errorf("no conntrack entry of the phone carries the sip helper with sip.alg 1")
		}
		st, _ := gw.run("status")
		if !strings.Contains(st, "WARNING    sip.alg is '1'") || !strings.Contains(st, "rule       inet fw4 chain helper_voice") {
			t.Errorf("status does not warn about the ALG:\n%s", st)
		}
	})

	t.Run("after apply with sip.alg 0 every field arrives unmodified", func(t *testing.T) {
		setConfig("")
		gw.mustRun("apply")
		for _, f := range gwFlows(t, l) {
			if f.Helper.Name != "" && lab.VoIPGateway4.Masked().Contains(f.TupleOrig.IP.SourceAddress) {
				t.Errorf("conntrack entry of the VoIP network still has helper %q: %v", f.Helper.Name, f.TupleOrig)
			}
		}
		out, err := diagnose(t, l)
		t.Logf("diagnose:\n%s", out)
		if err != nil || !strings.Contains(out, "no SIP ALG") || strings.Contains(out, "REWRITTEN") {
			t.Errorf("the probe still sees rewrites (err %v)", err)
		}
		flows := phoneFlowsToEcho(t, l)
		if len(flows) == 0 {
			t.Fatal("no conntrack entry for the probe's SIP flow")
		}
		for _, f := range flows {
			if f.Helper.Name != "" {
				t.Errorf("SIP flow %v has helper %q", f.TupleOrig, f.Helper.Name)
			}
			// The kernel's own UDP timeouts are 30 s / 120 s; only voipgw's ct timeout
			// object (300 s) gives more.
			if f.Timeout <= 120 || f.Timeout > 300 {
				t.Errorf("SIP flow %v: timeout %d s, want voipgw's 300 s", f.TupleOrig, f.Timeout)
			} else {
				t.Logf("live SIP flow %v: conntrack timeout %d s", f.TupleOrig, f.Timeout)
			}
		}
		st, _ := gw.run("status")
		if !strings.Contains(st, "neutralised (iifname != VoIP interface)") || strings.Contains(st, "PROBLEM: SIP") {
			t.Errorf("status:\n%s", st)
		}
	})

	t.Run("down brings the foreign rule back exactly", func(t *testing.T) {
		gw.mustRun("down")
		after, err := l.GW.Run("nft", "list", "table", "inet", "fw4")
		if err != nil {
			t.Fatal(err)
		}
		if after != foreignBefore {
			t.Errorf("foreign table after down:\n%s\nbefore apply:\n%s", after, foreignBefore)
		}
		if _, err := l.GW.Run("nft", "list", "table", "inet", "voipgw"); err == nil {
			t.Errorf("voipgw's table remains after down")
		}
	})
}

func runStdin(stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
