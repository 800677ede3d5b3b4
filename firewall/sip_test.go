package firewall

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/lab"
)

func sipLabSpec() Spec {
	s := labSpec()
	s.SIP = SIPSpec{SIPPorts: config.DefaultSIPPorts, SIPTimeout: 300 * time.Second,
		RTPPorts: []config.PortSpan{{First: 40000, Last: 50000}, {First: 45000, Last: 65000}, {First: 9000, Last: 9000}}, RTPTimeout: 180 * time.Second}
	return s
}

// The table never assigns a conntrack helper, and the timeouts come out as nft writes them.
func TestSIPRender(t *testing.T) {
	tbl, err := Build(sipLabSpec())
	if err != nil {
		t.Fatal(err)
	}
	r := tbl.Render()
	flat := strings.Join(strings.Fields(r), " ")
	if strings.Contains(r, "ct helper") {
		t.Errorf("voipgw's table assigns a conntrack helper:\n%s", r)
	}
	for _, want := range []string{
		"\tct timeout voip_sip_udp {\n\t\tprotocol udp\n\t\tl3proto ip\n\t\tpolicy = { unreplied : 300, replied : 300 }\n\t}\n",
		"\tct timeout voip_rtp_udp {\n\t\tprotocol udp\n\t\tl3proto ip\n\t\tpolicy = { unreplied : 180, replied : 180 }\n\t}\n",
		// In voip_out, only for a flow's first packet: after the established accept.
		"\t\tct state invalid drop\n\t\tudp dport @sip_udp_ports ct timeout set \"voip_sip_udp\"\n\t\tudp dport @rtp_udp_ports ct timeout set \"voip_rtp_udp\"\n",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("render lacks %q:\n%s", want, r)
		}
	}
	for _, want := range []string{"elements = { 5060, 5075, 5080, 5090 }", "elements = { 9000, 40000-65000 }" /* overlapping spans merged */} {
		if !strings.Contains(flat, want) {
			t.Errorf("render lacks %q", want)
		}
	}
	// A spec without SIP settings adds nothing.
	plain, err := Build(labSpec())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.Render(), ChainSIPCT) || len(plain.CtTimeouts) != 0 {
		t.Errorf("SIP objects without a SIP spec")
	}
	// nft omits policy values equal to its defaults (unreplied 30, replied 120).
	o := &CtTimeout{Name: "x", Unreplied: 30 * time.Second, Replied: 120 * time.Second}
	if got := o.render(); !strings.Contains(got, "policy = {  }") {
		t.Errorf("defaults render as %q", got)
	}
}

// Installed through netlink, the ct timeout objects and rules list back as rendered,
// and the objects carry the configured values.
func TestSIPApplyListsBack(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: the nft command is not installed")
	}
	ns := lab.TestNS(t, "fwsip")
	tbl, err := Build(sipLabSpec())
	if err != nil {
		t.Fatal(err)
	}
	applyListsBack(t, ns, tbl)
	var found map[string]CtTimeoutValues
	if err := ns.Do(func() (err error) {
		found, err = ReadCtTimeouts("voipgw", CtTimeoutSIP, CtTimeoutRTP, "absent")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wantVals := map[string]CtTimeoutValues{CtTimeoutSIP: {300, 300}, CtTimeoutRTP: {180, 180}}
	if fmt.Sprint(found) != fmt.Sprint(wantVals) {
		t.Errorf("ct timeout objects in the kernel: %v, want %v", found, wantVals)
	}
}
