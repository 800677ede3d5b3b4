package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/lab"
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

// offloadedFlow reports whether the gateway's conntrack entry of the UDP flow
// from src to dst has been put into a flowtable (IPS_OFFLOAD), and whether there is one.
func offloadedFlow(t *testing.T, ns *lab.NS, src, dst netip.AddrPort) (found, offloaded bool) {
	t.Helper()
	if err := ns.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		flows, err := c.Dump(nil)
		if err != nil {
			return err
		}
		for _, f := range flows {
			o := f.TupleOrig
			if o.Proto.Protocol == 17 && netip.AddrPortFrom(o.IP.SourceAddress, o.Proto.SourcePort) == src &&
				netip.AddrPortFrom(o.IP.DestinationAddress, o.Proto.DestinationPort) == dst {
				found, offloaded = true, f.Status.Offload()
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("conntrack dump: %v", err)
	}
	return found, offloaded
}

// fw4's software flow offloading (`option flow_offloading '1'`) with the phones'
// network in its flowtable: a phone's established two-way flow is offloaded after
// its first packets (nft_flow_offload_eval takes any confirmed UDP flow), and its
// later packets take the flowtable's fast path from the ingress hook of the
// device they arrive on, past the forward hook where voip_out's tick refreshes
// the mapping. The mapping must still outlive the flow's first packets by more
// than nat.timeout: its sets stay filled (nat_out4, nat_in4) and a second platform
// address still reaches the phone through it.
func TestFullConeFlowOffloadInLab(t *testing.T) {
	const port = 41150
	const timeout = 5 * time.Second
	l, _, p1, _ := twoPhonesOnPort(t, "\nconfig nat 'nat'\n\toption timeout '5'\n", port)
	requireFlowtable(t, l.GW, lab.GWWANIf)
	// fw4 with voipgw's zone, its flowtable on the phones' side and on WAN.
	fw4LoadRuleset(t, l.GW, "start", fw4RulesetOffload(true, []string{lab.GWVoIPIf, lab.GWWANIf}))

	wan := lab.WANGateway.Addr()
	phone, sbc := ap(lab.Phone1Addr.Addr(), port), ap(lab.SBC, 5060)
	// A SIP flow with keep-alives and their answers, 50 a second, for 1.6 × the
	// mapping timeout: two-way all along.
	const sendFor = 8 * timeout / 5
	n := 0
	for start := time.Now(); time.Since(start) < sendFor; n++ {
		if got := mappedOnce(t, p1, sbc); got != ap(wan, port) {
			t.Fatalf("exchange %d: phone1 seen as %s, want %s", n, got, ap(wan, port))
		}
		time.Sleep(20 * time.Millisecond)
	}
	found, offloaded := offloadedFlow(t, l.GW, phone, sbc)
	if !found || !offloaded {
		t.Fatalf("phone1's flow to the SBC after %d exchanges: conntrack entry found %v, offloaded %v; the test needs fw4's flowtable to take it", n, found, offloaded)
	}
	t.Logf("%d exchanges in %v, the flow offloaded", n, sendFor)

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
		t.Errorf("after %v of an offloaded two-way flow phone1's mapping is gone from nat_out4 (timeout %v): %+v", sendFor, timeout, st.Mappings)
	case m.External != port || !m.Reachable:
		t.Errorf("phone1's mapping %+v, want :%d with its nat_in4 entry", *m, port)
	case m.Expires < timeout-2*time.Second:
		t.Errorf("phone1's mapping expires in %v: not refreshed by the offloaded flow (timeout %v)", m.Expires, timeout)
	}
	if !unsolicited(t, l, ap(lab.SBC2, 40400), ap(wan, port), p1) {
		t.Errorf("platform %s did not reach phone1 through its mapping %s while its flow to the SBC was offloaded", lab.SBC2, ap(wan, port))
	}
}
