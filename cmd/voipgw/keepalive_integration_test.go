package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/lab"
)

// Short timeouts so a silent phone loses its binding within seconds: conntrack's
// UDP timeouts in the gateway namespace (ctUDPTimeout), the full-cone map (5 s, the
// floor) and a 1 s keep-alive interval. The sip section's ct timeout object for
// media (rtp_timeout, floor 30 s) would hold the test's media flow for 30 s, so its
// rtp_port is moved off the test's media port: the flow gets the sysctl timeouts.
const (
	ctUDPTimeout     = 2 * time.Second
	keepaliveNATWait = 8 * time.Second // > 3 × ctUDPTimeout and > nat timeout + ctUDPTimeout
)

func keepaliveConfig(keepalive string) string {
	return lab.Config(`
config sip 'sip'
	list rtp_port '30000'

config nat 'nat'
	option timeout '5'

config keepalive 'keepalive'
	option enabled '` + keepalive + `'
	option interval '1'
	option max_idle '600'
`)
}

func setCtUDPTimeouts(t *testing.T, ns *lab.NS) {
	t.Helper()
	secs := []byte(strings.TrimSuffix(ctUDPTimeout.String(), "s"))
	if err := ns.Do(func() error {
		for _, f := range []string{"nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"} {
			if err := os.WriteFile("/proc/sys/net/netfilter/"+f, secs, 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("conntrack UDP timeouts in %s: %v", ns.Name, err)
	}
}

// mediaCall is a phone's media flow to a peer socket the test controls in the
// internet namespace.
type mediaCall struct {
	phone, peer *net.UDPConn
	mapped      netip.AddrPort // the phone's endpoint as the peer sees it
}

func startCall(t *testing.T, l *lab.Lab, phonePort, peerPort uint16) *mediaCall {
	t.Helper()
	ph, err := lab.ListenUDP(l.Phone1, ap(lab.Phone1Addr.Addr(), phonePort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ph.Close() })
	peer, err := lab.ListenUDP(l.Inet, ap(lab.SBC, peerPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c := &mediaCall{phone: ph, peer: peer}
	for i := 0; i < 5; i++ {
		if _, err := ph.WriteToUDPAddrPort([]byte("rtp"), ap(lab.SBC, peerPort)); err != nil {
			t.Fatal(err)
		}
		msg, from, ok, err := lab.Receive(peer, 3*time.Second)
		if err != nil || !ok || msg != "rtp" {
			t.Fatalf("peer got no media from the phone (%v)", err)
		}
		if c.mapped.IsValid() && from != c.mapped {
			t.Fatalf("the phone's mapping changed within the call: %s then %s", c.mapped, from)
		}
		c.mapped = from
		if _, err := peer.WriteToUDPAddrPort([]byte("media"), from); err != nil {
			t.Fatal(err)
		}
		if _, _, ok, _ := lab.Receive(ph, 3*time.Second); !ok {
			t.Fatalf("the phone got no media back through %s", from)
		}
	}
	return c
}

// silence lets the phone stay silent for d while the peer counts what it receives
// from the phone's mapping: the keep-alives (empty datagrams) and anything else.
func (c *mediaCall) silence(t *testing.T, d time.Duration) (empty, other int) {
	t.Helper()
	end := time.Now().Add(d)
	buf := make([]byte, 2048)
	for time.Now().Before(end) {
		c.peer.SetReadDeadline(end)
		n, from, err := c.peer.ReadFromUDPAddrPort(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if from == c.mapped && n == 0 {
			empty++
		} else {
			other++
		}
	}
	return empty, other
}

// reachable says whether the peer's packet to the old mapping still reaches the phone.
func (c *mediaCall) reachable(t *testing.T) bool {
	t.Helper()
	drain(c.phone)
	if _, err := c.peer.WriteToUDPAddrPort([]byte("after silence"), c.mapped); err != nil {
		t.Fatal(err)
	}
	msg, _, ok, err := lab.Receive(c.phone, probeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	return ok && msg == "after silence"
}

func phoneEntry(t *testing.T, l *lab.Lab, phone, peer netip.AddrPort) bool {
	t.Helper()
	var found bool
	if err := l.GW.Do(func() error {
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Get(conntrack.NewFlow(unix.IPPROTO_UDP, 0, phone.Addr(), peer.Addr(), phone.Port(), peer.Port(), 0, 0))
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		found = err == nil
		return err
	}); err != nil {
		t.Fatalf("conntrack get: %v", err)
	}
	return found
}

func keepaliveFeature(t *testing.T, gw *gwCmd) keepaliveReport {
	t.Helper()
	st := gw.status()
	var r keepaliveReport
	b, _ := json.Marshal(st.Features["keepalive"])
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("status keepalive: %v", err)
	}
	return r
}

// A phone that stops sending keeps its media binding (conntrack entry, full-cone
// mapping, the peer's latch) with the helper of `voipgw run`, for longer than
// three conntrack UDP timeouts and the mapping timeout, and loses it without the
// helper. Then the daemon's SIGHUP with a changed config changes the table, and
// SIGTERM exits 0 leaving the table.
func TestKeepaliveInLab(t *testing.T) {
	l, gw := newLab(t)
	if err := os.WriteFile(gw.config, []byte(keepaliveConfig("1")), 0o644); err != nil {
		t.Fatal(err)
	}
	gw.mustRun("apply")
	setCtUDPTimeouts(t, l.GW)
	phoneAt := func(port uint16) netip.AddrPort { return ap(lab.Phone1Addr.Addr(), port) }

	t.Run("helper off: the silent phone loses its binding", func(t *testing.T) {
		c := startCall(t, l, 40600, 40610)
		empty, _ := c.silence(t, keepaliveNATWait)
		if empty != 0 {
			t.Errorf("the peer got %d keep-alives with no helper running", empty)
		}
		if phoneEntry(t, l, phoneAt(40600), ap(lab.SBC, 40610)) {
			t.Errorf("the phone's conntrack entry outlived %s of silence with %s UDP timeouts", keepaliveNATWait, ctUDPTimeout)
		}
		if c.reachable(t) {
			t.Errorf("the peer's packet to %s still reached the silent phone after %s without keep-alives", c.mapped, keepaliveNATWait)
		}
	})

	d := startNotifyDaemon(t, l.GW, gw.config, gw.stateDir)
	d.expect("READY=1")

	t.Run("helper on: the silent phone keeps its binding", func(t *testing.T) {
		c := startCall(t, l, 40620, 40630)
		empty, other := c.silence(t, keepaliveNATWait)
		t.Logf("during %s of silence the peer got %d empty keep-alives from %s, %d other datagrams", keepaliveNATWait, empty, c.mapped, other)
		if empty < 3 {
			t.Errorf("the peer got %d keep-alives from the phone's mapping %s in %s at a 1 s interval", empty, c.mapped, keepaliveNATWait)
		}
		if !phoneEntry(t, l, phoneAt(40620), ap(lab.SBC, 40630)) {
			t.Errorf("the phone's conntrack entry is gone despite the keep-alives")
		}
		found := false
		for _, m := range gw.status().Features["nat"].(map[string]any)["kernel"].(map[string]any)["mappings"].([]any) {
			mm := m.(map[string]any)
			if mm["internal"] == phoneAt(40620).String() && uint16(mm["external_port"].(float64)) == c.mapped.Port() {
				found = true
			}
		}
		if !found {
			t.Errorf("nat_out4 lost %s → %s", phoneAt(40620), c.mapped)
		}
		if !c.reachable(t) {
			t.Errorf("the peer's packet to %s did not reach the phone after %s of silence with the helper", c.mapped, keepaliveNATWait)
		}
		r := keepaliveFeature(t, gw)
		if !r.Running || r.Daemon == nil || r.Daemon.Stats.KeepalivesSent < uint64(empty) || r.Daemon.Stats.Started < 1 || r.Daemon.Stats.Tracked < 1 {
			t.Errorf("status keepalive: %+v (daemon %+v)", r, r.Daemon)
		}
		out, _ := gw.run("status")
		if !strings.Contains(out, "RTP keep-alive helper") || !strings.Contains(out, "keep-alives") {
			t.Errorf("status lacks the helper:\n%s", out)
		}
	})

	t.Run("SIGHUP re-applies a changed config", func(t *testing.T) {
		if !strings.Contains(voipgwTable(t, l.GW), "media_out4") {
			t.Fatal("media_out4 missing before the change")
		}
		if err := os.WriteFile(gw.config, []byte(keepaliveConfig("0")), 0o644); err != nil {
			t.Fatal(err)
		}
		d.signal(syscall.SIGHUP)
		d.reapplied()
		if tbl := voipgwTable(t, l.GW); strings.Contains(tbl, "media_out4") || strings.Contains(tbl, "media_track") {
			t.Errorf("keepalive disabled and SIGHUP: the media tracking is still in the table")
		}
		if _, ok := gw.status().Features["keepalive"]; ok {
			t.Errorf("status still shows the keep-alive helper after it was disabled")
		}
	})

	t.Run("SIGTERM exits 0 and leaves the table", func(t *testing.T) {
		d.signal(syscall.SIGTERM)
		if err := d.wait(); err != nil {
			t.Fatalf("voipgw run on SIGTERM: %v", err)
		}
		if !gw.status().Firewall.Present {
			t.Errorf("the table is gone after SIGTERM")
		}
	})
}
