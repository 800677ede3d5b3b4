package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/uci"
	"github.com/voipgw/voipgw/uci/ucitest"
)

// requireFlowtable skips the test where the kernel cannot make a flowtable: the
// nf_flow_table modules are missing (this development host's kernel: `nft add
// flowtable` fails with ENOENT) or not loaded (the VM loads them with
// VM_MODULES='nf_flow_table*'). It tries one on dev in ns and removes it again.
func requireFlowtable(t *testing.T, ns *lab.NS, dev string) {
	t.Helper()
	const probe = "voipgw_ftprobe"
	if _, err := ns.Run("nft", "add", "table", "inet", probe); err != nil {
		t.Fatal(err)
	}
	defer ns.Run("nft", "delete", "table", "inet", probe)
	if out, err := ns.Run("nft", "add", "flowtable", "inet", probe, "ft", "{ hook ingress priority 0; devices = { "+dev+" }; }"); err != nil {
		t.Skipf("skipping: this kernel has no flowtable support (nf_flow_table, nf_flow_table_inet; in the VM: VM_MODULES='nf_flow_table*'): %s", strings.TrimSpace(out))
	}
}

// ctFlow is what the gateway's conntrack says of the UDP flow from src to dst, and
// how many expectations it holds.
type ctFlow struct {
	found, offloaded bool
	helper           string // the helper conntrack lists for the flow
	expectations     int    // of the whole table
}

func conntrackFlow(t *testing.T, ns *lab.NS, src, dst netip.AddrPort) ctFlow {
	t.Helper()
	var r ctFlow
	err := eachUDPFlow(ns, func(c *conntrack.Conn, f conntrack.Flow) error {
		o := f.TupleOrig
		if netip.AddrPortFrom(o.IP.SourceAddress, o.Proto.SourcePort) == src && netip.AddrPortFrom(o.IP.DestinationAddress, o.Proto.DestinationPort) == dst {
			r.found, r.offloaded, r.helper = true, f.Status.Offload(), f.Helper.Name
		}
		return nil
	})
	if err == nil {
		err = ns.Do(func() error {
			c, err := conntrack.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			exps, err := c.DumpExpect()
			r.expectations = len(exps)
			return err
		})
	}
	if err != nil {
		t.Fatalf("conntrack dump: %v", err)
	}
	return r
}

// fw4's software flow offloading (`option flow_offloading '1'`) against the full
// cone. fw4 offloads any confirmed UDP flow (nft_flow_offload_eval), and an
// offloaded flow's packets are forwarded from the ingress hook of each flowtable
// device they arrive on, past the forward hook where voip_out's tick refreshes the
// mapping. voipgw keeps the phones' UDP flows out of the flowtable
// (firewall.ObjNoOffload). A phone's two-way flow runs for 1.6 × nat.timeout; then
// the mapping's sets (nat_out4, nat_in4) are read and a second platform address
// sends to the mapped port. A LAN host's UDP flow through the same fw4 must be
// offloaded, or the test would prove nothing.
//
//   - WAN alone in the flowtable: fw4's resolve_offload_devices today with
//     voipgw's zone (a zone's `list device` entries are not in related_physdevs,
//     only the devices of its networks are).
//   - The phones' device in it too: the VoIP device is the device of a network in
//     an fw4 zone, or, with fw4 from 2022-05 to 2024-03, a lower device of one.
//     Without voipgw's exemption the mapping expires here under the live flow.
//
// fw4's wan zone has a port forward here, so fw4 accepts DNATed flows (`ct status
// dnat accept`) whatever voipgw adds to its config: what is measured is offloading.
func TestFullConeFlowOffloadInLab(t *testing.T) {
	for _, c := range []struct {
		name    string
		devices []string
	}{
		{"WAN alone in the flowtable", []string{lab.GWWANIf}},
		{"phones' device and WAN in the flowtable", []string{lab.GWVoIPIf, lab.GWWANIf}},
	} {
		t.Run(c.name, func(t *testing.T) { fullConeOffloaded(t, c.devices) })
	}
}

// withPortForward adds a port forward on wan to fw (TCP 8080 to the LAN PC's port
// 80), which gives fw4's wan zone dflags.dnat: `ct status dnat accept`.
func withPortForward(t *testing.T, fw *uci.File) *uci.File {
	t.Helper()
	f, err := ucitest.Apply(fw, "firewall", []string{
		"set firewall.lab_forward=redirect",
		"set firewall.lab_forward.name='lab port forward'",
		"set firewall.lab_forward.src='wan'",
		"set firewall.lab_forward.dest='lan'",
		"set firewall.lab_forward.proto='tcp'",
		"set firewall.lab_forward.src_dport='8080'",
		"set firewall.lab_forward.dest_ip='" + lab.LANPCAddr.Addr().String() + "'",
		"set firewall.lab_forward.dest_port='80'",
		"set firewall.lab_forward.target='DNAT'",
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func fullConeOffloaded(t *testing.T, devices []string) {
	const port = 41150
	const timeout = 5 * time.Second
	l, gw, p1, _ := twoPhonesOnPort(t, "\nconfig nat 'nat'\n\toption timeout '5'\n", port)
	requireFlowtable(t, l.GW, lab.GWWANIf)
	fw4LoadRuleset(t, l.GW, "start", fw4RulesetFor(t, withPortForward(t, withVoipgw(t, gw, stockFirewall(t))), devices))

	wan := lab.WANGateway.Addr()
	phone, sbc := ap(lab.Phone1Addr.Addr(), port), ap(lab.SBC, 5060)
	// A SIP flow with keep-alives and their answers, 50 a second: two-way all along.
	const sendFor = 8 * timeout / 5
	n := 0
	for start := time.Now(); time.Since(start) < sendFor; n++ {
		if got := mappedOnce(t, p1, sbc); got != ap(wan, port) {
			t.Fatalf("exchange %d: phone1 seen as %s, want %s", n, got, ap(wan, port))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An IPv6 flow of the phone (no NAT; its pinhole is refreshed the same way).
	p6, sbc6 := listenPhone(t, l.Phone1, lab.Phone1Addr6.Addr(), port), ap(lab.SBC6, 5060)
	for range 10 {
		mappedOnce(t, p6, sbc6)
	}
	if f := conntrackFlow(t, l.GW, ap(lab.Phone1Addr6.Addr(), port), sbc6); !f.found || f.offloaded {
		t.Errorf("phone1's IPv6 flow to the SBC: %+v, want a conntrack entry that is not offloaded", f)
	}
	// The LAN host's flow: fw4's flowtable takes UDP flows in this run.
	pc := listenPhone(t, l.LANPC, lab.LANPCAddr.Addr(), 41160)
	for range 5 {
		mappedOnce(t, pc, ap(lab.Unlisted, 5060))
	}
	if f := conntrackFlow(t, l.GW, ap(lab.LANPCAddr.Addr(), 41160), ap(lab.Unlisted, 5060)); !f.offloaded {
		t.Fatalf("the LAN host's UDP flow was not offloaded (%+v): fw4's flowtable is not at work, the test proves nothing", f)
	}
	f := conntrackFlow(t, l.GW, phone, sbc)
	t.Logf("%d exchanges in %v; phone1's flow: %+v", n, sendFor, f)
	switch {
	case !f.found:
		t.Errorf("phone1's flow to the SBC has no conntrack entry")
	case f.offloaded:
		t.Errorf("phone1's flow to the SBC was offloaded")
	case f.helper != "" || f.expectations != 0:
		t.Errorf("phone1's flow lists helper %q, conntrack holds %d expectations: the exemption must not act as a helper", f.helper, f.expectations)
	}

	var st firewall.NATStatus
	if err := l.GW.Do(func() (err error) { st, err = firewall.ReadNAT("voipgw"); return err }); err != nil {
		t.Fatal(err)
	}
	var m *firewall.Mapping
	for i := range st.Mappings {
		if st.Mappings[i].Internal == phone {
			m = &st.Mappings[i]
		}
	}
	switch {
	case m == nil:
		t.Errorf("after %v of a two-way flow phone1's mapping is gone from nat_out4 (timeout %v): %+v", sendFor, timeout, st.Mappings)
	case m.External != port || !m.Reachable:
		t.Errorf("phone1's mapping %+v, want :%d with its nat_in4 entry", *m, port)
	case m.Expires < timeout-2*time.Second:
		t.Errorf("phone1's mapping expires in %v: not refreshed by its flow (timeout %v)", m.Expires, timeout)
	}
	if !unsolicited(t, l, ap(lab.SBC2, 40400), ap(wan, port), p1) {
		t.Errorf("platform %s did not reach phone1 through its mapping %s", lab.SBC2, ap(wan, port))
	}
	// The flow that came in through the mapping is not offloaded either: the
	// phone's answers to it must keep refreshing the mapping too.
	if f := conntrackFlow(t, l.GW, ap(lab.SBC2, 40400), ap(wan, port)); !f.found || f.offloaded {
		t.Errorf("the inbound flow from %s: %+v, want a conntrack entry that is not offloaded", lab.SBC2, f)
	}
}
