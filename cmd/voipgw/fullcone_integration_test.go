package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/lab"
)

// The full-cone promise for every phone endpoint, not only the first one on a port
// (issue 11): a remapped endpoint keeps its mapping like a preserved one, no
// external port is ever shared, the mapping exists from the first packet, both
// filtering modes hold for both kinds of mapping, and expiry frees the port.
// Every exchange here is ONE datagram out and its echo back: the mapping must
// exist from the phone's first packet.

// mappedOnce sends one datagram from c to an echo service and returns the source
// the service saw (the external mapping).
func mappedOnce(t *testing.T, c *net.UDPConn, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	got, err := lab.EchoSource(c, dst)
	if err != nil {
		t.Fatalf("%s → %s: %v", c.LocalAddr(), dst, err)
	}
	return got
}

// deleteConntrackOf deletes the gateway's conntrack entries whose original source
// is src (what their expiry would do).
func deleteConntrackOf(t *testing.T, ns *lab.NS, src netip.AddrPort) int {
	t.Helper()
	n := 0
	if err := eachUDPFlow(ns, func(c *conntrack.Conn, f conntrack.Flow) error {
		if o := f.TupleOrig; o.IP.SourceAddress != src.Addr() || o.Proto.SourcePort != src.Port() {
			return nil
		}
		n++
		return c.Delete(f)
	}); err != nil {
		t.Fatalf("delete conntrack entries of %s: %v", src, err)
	}
	return n
}

// eachUDPFlow calls fn for each UDP flow in ns's conntrack table, on one
// connection; an error of fn ends the walk.
func eachUDPFlow(ns *lab.NS, fn func(c *conntrack.Conn, f conntrack.Flow) error) error {
	return ns.Do(func() error {
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
			if f.TupleOrig.Proto.Protocol != unix.IPPROTO_UDP {
				continue
			}
			if err := fn(c, f); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeConfig(t *testing.T, gw *gwCmd, extra string) {
	t.Helper()
	if err := os.WriteFile(gw.config, []byte(lab.Config(extra)), 0o644); err != nil {
		t.Fatal(err)
	}
}

const natEIF = "\nconfig nat 'nat'\n\toption filtering 'endpoint-independent'\n"

func listenPhone(t *testing.T, ns *lab.NS, a netip.Addr, port uint16) *net.UDPConn {
	t.Helper()
	c, err := lab.ListenUDP(ns, ap(a, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// twoPhonesOnPort applies the lab config with extra and opens phone1's and
// phone2's sockets on the same UDP port.
func twoPhonesOnPort(t *testing.T, extra string, port uint16) (*lab.Lab, *gwCmd, *net.UDPConn, *net.UDPConn) {
	t.Helper()
	l, gw := newLab(t)
	writeConfig(t, gw, extra)
	gw.mustRun("apply")
	return l, gw, listenPhone(t, l.Phone1, lab.Phone1Addr.Addr(), port), listenPhone(t, l.Phone2, lab.Phone2Addr.Addr(), port)
}

// The report, step by step: phone 2 takes port 41010, phone 1 is remapped;
// phone 1's conntrack entry goes; phone 1's next flow must leave on its remapped
// port again (not on 41010, phone 2's), and anyone reaches both through their
// mappings (endpoint-independent filtering).
func TestFullConeRemappedEndpointInLab(t *testing.T) {
	const port = 41010
	l, _, p1, p2 := twoPhonesOnPort(t, natEIF, port)
	wan := lab.WANGateway.Addr()

	m2 := mappedOnce(t, p2, ap(lab.SBC, 5060))
	if m2 != ap(wan, port) {
		t.Fatalf("phone2 (first on :%d) mapped to %s, want its own port %s", port, m2, ap(wan, port))
	}
	m1 := mappedOnce(t, p1, ap(lab.SBC, 5060))
	if m1.Addr() != wan || m1 == m2 {
		t.Fatalf("phone1 on the same port mapped to %s, want the WAN address and a port other than phone2's %s", m1, m2)
	}
	t.Logf("phone2 :%d → %s (kept), phone1 :%d → %s (remapped)", port, m2, port, m1)

	if n := deleteConntrackOf(t, l.GW, ap(lab.Phone1Addr.Addr(), port)); n == 0 {
		t.Fatalf("no conntrack entry of phone1 to delete")
	}
	for _, dst := range []netip.AddrPort{ap(lab.SBC, 40000), ap(lab.SBC2, 5060), ap(lab.SBC, 5060)} {
		if got := mappedOnce(t, p1, dst); got != m1 {
			t.Errorf("phone1 → %s after its conntrack entry was deleted: mapped to %s, want its mapping %s (phone2 holds %s)", dst, got, m1, m2)
		}
	}
	if got := mappedOnce(t, p2, ap(lab.SBC, 40000)); got != m2 {
		t.Errorf("phone2 → SBC:40000 mapped to %s, want %s", got, m2)
	}
	if !unsolicited(t, l, ap(lab.Unlisted, 40200), m1, p1) {
		t.Errorf("an unlisted host did not reach phone1 through its remapped mapping %s (endpoint-independent filtering)", m1)
	}
	if !unsolicited(t, l, ap(lab.Unlisted, 40201), m2, p2) {
		t.Errorf("an unlisted host did not reach phone2 through its mapping %s (endpoint-independent filtering)", m2)
	}
}

// A phone that sends one packet and then waits is reachable: the mapping exists
// from the first packet, preserved or remapped; with filtering provider only the
// platform gets in.
func TestFullConeFirstPacketInLab(t *testing.T) {
	const port = 41030
	l, _, p1, p2 := twoPhonesOnPort(t, "", port) // default filtering: provider
	wan := lab.WANGateway.Addr()

	m1 := mappedOnce(t, p1, ap(lab.SBC, 5060))
	m2 := mappedOnce(t, p2, ap(lab.SBC, 5060))
	if m1 != ap(wan, port) || m2.Addr() != wan || m2 == m1 {
		t.Fatalf("mappings %s and %s, want %s and another port", m1, m2, ap(wan, port))
	}
	for _, c := range []struct {
		name   string
		phone  *net.UDPConn
		mapped netip.AddrPort
	}{{"preserved", p1, m1}, {"remapped", p2, m2}} {
		t.Run(c.name, func(t *testing.T) {
			if !unsolicited(t, l, ap(lab.SBC2, 40300), c.mapped, c.phone) {
				t.Errorf("platform %s did not reach the phone through %s after one packet", lab.SBC2, c.mapped)
			}
			if !unsolicited(t, l, ap(lab.Platform, 40301), c.mapped, c.phone) {
				t.Errorf("platform %s did not reach the phone through %s after one packet", lab.Platform, c.mapped)
			}
			if unsolicited(t, l, ap(lab.Unlisted, 40302), c.mapped, c.phone) {
				t.Errorf("non-allowlisted %s reached the phone through %s with filtering provider", lab.Unlisted, c.mapped)
			}
		})
	}
}

// 50 phones on the same source port, sending at once in random order, conntrack
// flushed between rounds, each round to another destination: every phone keeps
// one external port and no two phones ever share one.
func TestFullConeManyPhonesInLab(t *testing.T) {
	l, gw := newLab(t)
	writeConfig(t, gw, natEIF)
	gw.mustRun("apply")
	const phones, port, rounds = 50, 41050, 6
	var conns []*net.UDPConn
	for i := range phones {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(20 + i)})
		if err := l.Phone1.AddAddrs(netip.PrefixFrom(a, lab.Phone1Addr.Bits())); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, listenPhone(t, l.Phone1, a, port))
	}
	dsts := []netip.AddrPort{ap(lab.SBC, 5060), ap(lab.SBC2, 5060), ap(lab.SBC, 40000)}
	first := make([]netip.AddrPort, phones)
	for r := range rounds {
		if r > 0 {
			flushConntrack(t, l.GW)
		}
		got := make([]netip.AddrPort, phones)
		errs := make([]error, phones)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, i := range rand.Perm(phones) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[i], errs[i] = lab.EchoSource(conns[i], dsts[(r+i)%len(dsts)])
			}()
		}
		close(start)
		wg.Wait()
		owner := map[netip.AddrPort]int{}
		for i := range phones {
			if errs[i] != nil {
				t.Errorf("round %d: phone %d (%s): %v", r, i, conns[i].LocalAddr(), errs[i])
				continue
			}
			if o, dup := owner[got[i]]; dup {
				t.Errorf("round %d: phones %d and %d share the external port %s", r, o, i, got[i])
			}
			owner[got[i]] = i
			if r == 0 {
				first[i] = got[i]
			} else if got[i] != first[i] {
				t.Errorf("round %d: phone %d mapped to %s, was %s in round 0", r, i, got[i], first[i])
			}
		}
		if t.Failed() {
			t.Fatalf("round %d failed", r)
		}
	}
	out, _ := gw.run("status")
	var n, in, conflicts int
	for _, line := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "mappings %d (inbound entries %d, conflicts %d)", &n, &in, &conflicts); err == nil {
			break
		}
	}
	if n < phones || conflicts != 0 {
		t.Errorf("status: %d mappings, %d conflicts; want at least %d and none:\n%s", n, conflicts, phones, out)
	}
	// One phone kept its port, the others were remapped once each (their first packet).
	var remapped, dropped int
	for _, line := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "remapped %d new endpoints (own port taken), %d packets dropped", &remapped, &dropped); err == nil {
			break
		}
	}
	if remapped != phones-1 {
		t.Errorf("status: %d endpoints remapped (%d dropped), want %d:\n%s", remapped, dropped, phones-1, out)
	}
}

// A mapping that expires (nat.timeout) frees its port for another endpoint.
func TestFullConeExpiryInLab(t *testing.T) {
	const port = 41070
	l, _, p1, p2 := twoPhonesOnPort(t, natEIF+"\toption timeout '5'\n", port)
	wan := lab.WANGateway.Addr()
	if m := mappedOnce(t, p1, ap(lab.SBC, 5060)); m != ap(wan, port) {
		t.Fatalf("phone1 mapped to %s, want %s", m, ap(wan, port))
	}
	if m := mappedOnce(t, p2, ap(lab.SBC2, 5060)); m == ap(wan, port) {
		t.Fatalf("phone2 got %s while phone1's mapping holds it", m)
	}
	flushConntrack(t, l.GW)
	time.Sleep(6500 * time.Millisecond) // > nat.timeout with no packet
	if m := mappedOnce(t, p2, ap(lab.SBC2, 5060)); m != ap(wan, port) {
		t.Errorf("after both mappings expired phone2 mapped to %s, want the freed port %s", m, ap(wan, port))
	}
	if m := mappedOnce(t, p1, ap(lab.SBC, 5060)); m.Port() == port {
		t.Errorf("phone1 got %s back although phone2 now holds it", m)
	}
}

// Two phones racing for one port on two CPUs are serialised by nat_claim4. The race
// itself is a matter of nanoseconds, so this test makes its effect last: right after
// phone1 claims its port, its mapping is deleted from the kernel (as if phone2's
// packet had checked nat_held4 just before phone1's claim recorded it). Within
// the claim's lifetime phone2 must still not get the port.
func TestFullConeClaimLockInLab(t *testing.T) {
	const port = 41110
	l, _, p1, p2 := twoPhonesOnPort(t, natEIF, port)
	wan := lab.WANGateway.Addr()
	e1 := ap(lab.Phone1Addr.Addr(), port)
	if m := mappedOnce(t, p1, ap(lab.SBC, 5060)); m != ap(wan, port) {
		t.Fatalf("phone1 mapped to %s, want %s", m, ap(wan, port))
	}
	start := time.Now()
	if err := l.GW.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tbl := &nftables.Table{Name: "voipgw", Family: nftables.TableFamilyINet}
		for set, key := range map[string][]byte{
			firewall.SetNATOut4: firewall.NATKey4(e1), firewall.SetNATEps4: firewall.NATKey4(e1),
			firewall.SetNATIn4: firewall.PortKey(port), firewall.SetNATHeld4: firewall.PortKey(port),
		} {
			s, err := c.GetSetByName(tbl, set)
			if err != nil {
				return fmt.Errorf("set %s: %w", set, err)
			}
			if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: key}}); err != nil {
				return err
			}
		}
		return c.Flush()
	}); err != nil {
		t.Fatalf("delete phone1's mapping: %v", err)
	}
	deleteConntrackOf(t, l.GW, e1)
	m2 := mappedOnce(t, p2, ap(lab.SBC2, 5060))
	if elapsed := time.Since(start); elapsed > 900*time.Millisecond {
		t.Skipf("too slow to test the claim (%s since the claim, the lock lives 1 s)", elapsed)
	}
	if m2 == ap(wan, port) {
		t.Errorf("phone2 got %s within the lifetime of phone1's claim of it: the claim lock does not hold", m2)
	}
	t.Logf("phone2 :%d → %s while phone1's claim of :%d was live", port, m2, port)
}

// A busy one-way flow (RTP before the far end answers: conntrack keeps it `ct state
// new` for good) keeps its mapping for as long as it sends: the mapping refresh
// runs on a tick of voip_out (at most once a second per flow), not on every packet,
// and must still renew it. The accepted flow's later packets all pass (conntrack
// confirmed the flow), and a refused flow's later packets stay refused.
func TestFullConeBusyOneWayFlowInLab(t *testing.T) {
	const port = 41130
	const timeout = 5 * time.Second
	l, gw, p1, _ := twoPhonesOnPort(t, natEIF+"\toption timeout '5'\n", port)
	sink := func(dst netip.AddrPort) *atomic.Int64 {
		c, err := lab.ListenUDP(l.Inet, dst)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		var n atomic.Int64
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				n.Add(1)
			}
		}()
		return &n
	}
	allowed, refused := ap(lab.SBC, 45000), ap(lab.Unlisted, 45000)
	gotAllowed, gotRefused := sink(allowed), sink(refused)
	blocked := counter(t, gw, "blocked_not_allowlisted")

	// 100 packets a second for 1.5 × the mapping timeout, none answered.
	const pps, sendFor = 100, 3 * timeout / 2
	sent := 0
	for start := time.Now(); time.Since(start) < sendFor; sent++ {
		if _, err := p1.WriteToUDPAddrPort([]byte("rtp"), allowed); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second / pps)
	}
	var st firewall.NATStatus
	if err := l.GW.Do(func() (err error) { st, err = firewall.ReadNAT("voipgw"); return err }); err != nil {
		t.Fatal(err)
	}
	var m *firewall.Mapping
	for i := range st.Mappings {
		if st.Mappings[i].Internal == ap(lab.Phone1Addr.Addr(), port) {
			m = &st.Mappings[i]
		}
	}
	switch {
	case m == nil:
		t.Fatalf("after %v of a one-way flow phone1's mapping is gone (timeout %v): %+v", sendFor, timeout, st.Mappings)
	case m.External != port:
		t.Errorf("phone1 mapped to :%d, want its own port %d", m.External, port)
	case m.Expires < timeout-2*time.Second:
		t.Errorf("phone1's mapping expires in %v: not refreshed within the last tick (timeout %v)", m.Expires, timeout)
	}
	time.Sleep(200 * time.Millisecond)
	if n := gotAllowed.Load(); n != int64(sent) {
		t.Errorf("allowlisted one-way flow: %d of %d packets arrived", n, sent)
	}

	// A refused flow: every packet is a first packet (no conntrack entry is ever
	// confirmed), every one is refused and counted.
	const tries = 20
	for range tries {
		if _, err := p1.WriteToUDPAddrPort([]byte("rtp"), refused); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := gotRefused.Load(); n != 0 {
		t.Errorf("not allowlisted: %d packets arrived", n)
	}
	if got := counter(t, gw, "blocked_not_allowlisted"); got-blocked != tries {
		t.Errorf("blocked_not_allowlisted %d → %d, want +%d", blocked, got, tries)
	}
}
