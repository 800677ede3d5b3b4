package main

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/voipgw/voipgw/lab"
)

// mappedVia sends two datagrams from c to an echo service and returns the source
// the service saw (the external mapping), failing if it changed between them.
func mappedVia(t *testing.T, c *net.UDPConn, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	var seen netip.AddrPort
	for i := 0; i < 2; i++ {
		got, err := lab.EchoSource(c, dst)
		if err != nil {
			t.Fatal(err)
		}
		if seen.IsValid() && got != seen {
			t.Fatalf("%s → %s: mapping changed within one flow: %s then %s", c.LocalAddr(), dst, seen, got)
		}
		seen = got
	}
	return seen
}

func drain(c *net.UDPConn) {
	for {
		if _, _, ok, _ := lab.Receive(c, 50*time.Millisecond); !ok {
			return
		}
	}
}

// unsolicited sends one datagram from an internet host to the gateway's WAN
// address and says whether the phone's socket got it.
func unsolicited(t *testing.T, l *lab.Lab, from, to netip.AddrPort, phone *net.UDPConn) bool {
	t.Helper()
	drain(phone)
	s, err := lab.ListenUDP(l.Inet, from)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := "unsolicited from " + from.String()
	if _, err := s.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	for {
		got, src, ok, err := lab.Receive(phone, probeTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return false
		}
		if got == msg {
			if src != from {
				t.Errorf("phone got %q from %s, want the sender's own address %s", got, src, from)
			}
			return true
		}
	}
}

func flushConntrack(t *testing.T, ns *lab.NS) {
	t.Helper()
	if err := ns.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Flush()
	}); err != nil {
		t.Fatalf("flush conntrack in %s: %v", ns.Name, err)
	}
}

// Two phones on the same source port: each keeps one external mapping towards
// every destination (EIM), also after the clash and after their conntrack entries
// are gone (the case masquerade gets wrong, fullcone-findings trap 1); each is
// reachable through its mapping from a second platform address; only the
// allowlisted platform with filtering provider, anyone with endpoint-independent.
func TestFullConeInLab(t *testing.T) {
	l, gw := newLab(t)
	gw.mustRun("apply")
	wan := lab.WANGateway.Addr()
	const port = 5062
	p1, err := lab.ListenUDP(l.Phone1, ap(lab.Phone1Addr.Addr(), port))
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	p2, err := lab.ListenUDP(l.Phone2, ap(lab.Phone2Addr.Addr(), port))
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()

	m1 := mappedVia(t, p1, ap(lab.SBC, 5060))
	m2 := mappedVia(t, p2, ap(lab.SBC2, 5060))
	t.Logf("phone1 :%d → %s, phone2 :%d → %s", port, m1, port, m2)
	if m1 != ap(wan, port) {
		t.Errorf("first phone's mapping %s, want its own port kept: %s", m1, ap(wan, port))
	}
	if m2.Addr() != wan || m2 == m1 {
		t.Fatalf("second phone on the same port got %s, want the WAN address and a port other than %s", m2, m1)
	}

	t.Run("EIM: one mapping towards every destination", func(t *testing.T) {
		for _, dst := range []netip.AddrPort{ap(lab.SBC2, 5060), ap(lab.SBC, 40000)} {
			if got := mappedVia(t, p1, dst); got != m1 {
				t.Errorf("phone1 → %s mapped to %s, want %s", dst, got, m1)
			}
		}
		for _, dst := range []netip.AddrPort{ap(lab.SBC, 5060), ap(lab.SBC, 40000)} {
			if got := mappedVia(t, p2, dst); got != m2 {
				t.Errorf("phone2 → %s mapped to %s, want %s", dst, got, m2)
			}
		}
	})
	t.Run("EIM survives the loss of every conntrack entry", func(t *testing.T) {
		flushConntrack(t, l.GW)
		// Phone2 first: with masquerade alone it would now get its own port back
		// (free again for this tuple), which phone1's mapping holds.
		if got := mappedVia(t, p2, ap(lab.SBC, 40000)); got != m2 {
			t.Errorf("phone2 after conntrack flush mapped to %s, want %s", got, m2)
		}
		if got := mappedVia(t, p1, ap(lab.SBC2, 5060)); got != m1 {
			t.Errorf("phone1 after conntrack flush mapped to %s, want %s", got, m1)
		}
	})
	t.Run("status lists both mappings from the kernel", func(t *testing.T) {
		out, _ := gw.run("status")
		for _, want := range []string{
			"Full-cone NAT (filtering provider)",
			"mappings   2 (inbound entries 2, conflicts 0)",
			ap(lab.Phone1Addr.Addr(), port).String() + " → " + m1.String(),
			ap(lab.Phone2Addr.Addr(), port).String() + " → " + m2.String(),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("filtering provider: the platform reaches both phones, others do not", func(t *testing.T) {
		before := gw.status().Firewall.Counters["nat_inbound"].Packets
		if !unsolicited(t, l, ap(lab.SBC2, 40100), m1, p1) {
			t.Errorf("platform %s could not reach phone1 through %s", lab.SBC2, m1)
		}
		if !unsolicited(t, l, ap(lab.Platform, 40101), m2, p2) {
			t.Errorf("platform %s could not reach phone2 through %s", lab.Platform, m2)
		}
		if unsolicited(t, l, ap(lab.Unlisted, 40102), m1, p1) {
			t.Errorf("non-allowlisted %s reached phone1 through %s with filtering provider", lab.Unlisted, m1)
		}
		if after := gw.status().Firewall.Counters["nat_inbound"].Packets; after < before+2 {
			t.Errorf("nat_inbound went from %d to %d, want +2", before, after)
		}
	})
	t.Run("filtering endpoint-independent: anyone reaches the mapping", func(t *testing.T) {
		cfg := lab.Config("\nconfig nat 'nat'\n\toption filtering 'endpoint-independent'\n")
		if err := os.WriteFile(gw.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		gw.mustRun("apply") // the maps are carried over
		if !unsolicited(t, l, ap(lab.Unlisted, 40103), m1, p1) {
			t.Errorf("%s could not reach phone1 through %s (EIF)", lab.Unlisted, m1)
		}
		if !unsolicited(t, l, ap(lab.Unlisted, 40104), m2, p2) {
			t.Errorf("%s could not reach phone2 through %s (EIF)", lab.Unlisted, m2)
		}
		// An unmapped port stays closed.
		if unsolicited(t, l, ap(lab.Unlisted, 40105), ap(wan, 5999), p1) {
			t.Errorf("an unmapped port reached a phone")
		}
	})
	t.Run("a latching peer gives two-way media to both phones", func(t *testing.T) {
		for i, ph := range []struct {
			c      *net.UDPConn
			mapped netip.AddrPort
		}{{p1, m1}, {p2, m2}} {
			peer, err := l.StartLatchingPeer(ap(lab.SBC, uint16(40010+i)))
			if err != nil {
				t.Fatal(err)
			}
			drain(ph.c)
			got := 0
			for n := 0; n < 5; n++ {
				reply, from, ok, err := lab.Exchange(ph.c, peer.Addr, "rtp", time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if ok && from == peer.Addr && strings.HasPrefix(reply, "media to "+ph.mapped.String()) {
					got++
				}
			}
			if peer.Latch() != ph.mapped || got == 0 {
				t.Errorf("phone %d: peer latched %s (want %s), phone got %d of 5 media packets back", i+1, peer.Latch(), ph.mapped, got)
			}
		}
	})
}
