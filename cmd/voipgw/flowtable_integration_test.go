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

// fw4's software flow offloading (`option flow_offloading '1'`) against the full
// cone. A phone's established two-way flow is offloaded after its first packets
// (nft_flow_offload_eval takes any confirmed UDP flow), and its later packets take
// the flowtable's fast path from the ingress hook of each flowtable device they
// arrive on, past the forward hook where voip_out's tick refreshes the mapping.
// The flow runs for 1.6 × nat.timeout; then the mapping's sets (nat_out4, nat_in4)
// are read and a second platform address sends to the mapped port.
//
//   - WAN alone in the flowtable (fw4's resolve_offload_devices today with
//     voipgw's zone: a zone's `list device` entries are not in related_physdevs,
//     only the devices of its networks are): the phone's packets still come
//     through the forward hook, the mapping lives.
//   - The phones' device in the flowtable too (the VoIP device is the device of a
//     network in an fw4 zone, or, with fw4 from 2022-05 to 2024-03, a lower
//     device of one): the mapping expires under the live flow. voipgw's table has
//     no way to keep it (see firewall.FW4FlowOffloadWarning); this subtest shows
//     that the warning is still needed, and fails once it is not.
//
// fw4's wan zone accepts DNATed flows here (as with a port forward on it): without
// that, fw4 rejects the full cone's inbound flows whether or not it offloads.
func TestFullConeFlowOffloadInLab(t *testing.T) {
	t.Run("WAN alone in the flowtable: the mapping lives", func(t *testing.T) {
		if alive, inbound := fullConeOffloaded(t, []string{lab.GWWANIf}); !alive || !inbound {
			t.Errorf("mapping kept %v, reachable from a second platform address %v; want both", alive, inbound)
		}
	})
	t.Run("phones' device in the flowtable: the mapping expires", func(t *testing.T) {
		if alive, inbound := fullConeOffloaded(t, []string{lab.GWVoIPIf, lab.GWWANIf}); alive || inbound {
			t.Errorf("mapping kept %v, reachable from a second platform address %v: the offloaded flow no longer loses its mapping, voipgw's flow-offloading warning can go", alive, inbound)
		}
	})
}

// fullConeOffloaded runs a phone's two-way flow for longer than the mapping
// timeout with fw4's flowtable on devices, and reports whether the mapping was kept
// (refreshed within the last ticks, with its nat_in4 entry) and whether a second
// platform address reached the phone through it.
func fullConeOffloaded(t *testing.T, devices []string) (alive, inbound bool) {
	t.Helper()
	const port = 41150
	const timeout = 5 * time.Second
	l, _, p1, _ := twoPhonesOnPort(t, "\nconfig nat 'nat'\n\toption timeout '5'\n", port)
	requireFlowtable(t, l.GW, lab.GWWANIf)
	fw4LoadRuleset(t, l.GW, "start", fw4RulesetOffload(true, true, devices))

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
	found, offloaded := offloadedFlow(t, l.GW, phone, sbc)
	if !found || !offloaded {
		t.Fatalf("phone1's flow to the SBC after %d exchanges: conntrack entry found %v, offloaded %v; the test needs fw4's flowtable to take it", n, found, offloaded)
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
	if m != nil {
		t.Logf("%d exchanges in %v, the flow offloaded; phone1's mapping :%d, reachable %v, expires in %v", n, sendFor, m.External, m.Reachable, m.Expires)
		alive = m.External == port && m.Reachable && m.Expires >= timeout-2*time.Second
	} else {
		t.Logf("%d exchanges in %v, the flow offloaded; phone1 has no mapping (timeout %v): %+v", n, sendFor, timeout, st.Mappings)
	}
	inbound = unsolicited(t, l, ap(lab.SBC2, 40400), ap(wan, port), p1)
	return alive, inbound
}
