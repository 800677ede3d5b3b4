package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/voipgw/voipgw/lab"
)

var voipgwBin string

func TestMain(m *testing.M) {
	code := func() int {
		if b := os.Getenv("VOIPGW_BIN"); b != "" {
			// The QEMU VM suite ships a cross-compiled binary and has no Go toolchain.
			voipgwBin = b
		} else if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "voipgw-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			voipgwBin = filepath.Join(dir, "voipgw")
			out, err := exec.Command("go", "build", "-o", voipgwBin, ".").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build voipgw: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// gwCmd runs the voipgw binary inside the lab's gateway namespace.
type gwCmd struct {
	t        *testing.T
	l        *lab.Lab
	config   string
	stateDir string
}

func (g *gwCmd) run(args ...string) (string, error) {
	args = append(args, "--config", g.config, "--state-dir", g.stateDir)
	return g.l.GW.Run(voipgwBin, args...)
}

func (g *gwCmd) mustRun(args ...string) string {
	g.t.Helper()
	out, err := g.run(args...)
	if err != nil {
		g.t.Fatalf("voipgw %s: %v", args[0], err)
	}
	return out
}

func (g *gwCmd) status() statusReport {
	g.t.Helper()
	out, _ := g.run("status", "--json")
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		g.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return r
}

func (g *gwCmd) ruleset() string {
	g.t.Helper()
	out, err := g.l.GW.Run("nft", "list", "ruleset")
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}

func newLab(t *testing.T) (*lab.Lab, *gwCmd) {
	t.Helper()
	lab.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: the nft command is not installed (apt-get install nftables)")
	}
	l, err := lab.New(fmt.Sprintf("vgi%d", os.Getpid()%100000))
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	if err := l.StartPlatform(); err != nil {
		t.Fatalf("platform: %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "voipgw")
	if err := os.WriteFile(cfg, []byte(lab.Config("")), 0o644); err != nil {
		t.Fatal(err)
	}
	return l, &gwCmd{t: t, l: l, config: cfg, stateDir: filepath.Join(dir, "state")}
}

const probeTimeout = 700 * time.Millisecond

func expect(t *testing.T, ns *lab.NS, proto string, src, dst netip.AddrPort, want lab.Outcome) string {
	t.Helper()
	// A reachable destination answers within milliseconds, but the first packet of a
	// family may wait for neighbour discovery (about a second for IPv6 right after
	// forwarding is switched on); a silent one costs the full timeout.
	timeout := probeTimeout
	if want == lab.Reached || want == lab.Refused {
		timeout = 3 * time.Second
	}
	got, reply, err := lab.Probe(ns, proto, src, dst, timeout)
	if err != nil {
		t.Fatalf("%s %s → %s: %v", ns.Name, proto, dst, err)
	}
	if got != want {
		t.Errorf("%s %s → %s: %s, want %s", ns.Name, proto, dst, got, want)
	}
	return reply
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

var any0 netip.AddrPort

func TestPolicyInLab(t *testing.T) {
	l, gw := newLab(t)
	out := gw.mustRun("apply")
	if !strings.Contains(out, "applied config") {
		t.Fatalf("apply said: %s", out)
	}
	// The log's last word on an apply: how long it took, step by step.
	if !regexp.MustCompile(`msg="apply done" took=[0-9.]+ms plan=[0-9.]+ms network=[0-9.]+ms table=[0-9.]+ms sip_alg=[0-9.]+ms record=[0-9.]+ms release=[0-9.]+ms`).MatchString(out) {
		t.Errorf("apply did not log its steps' durations:\n%s", out)
	}

	t.Run("phone reaches SBC SIP, TLS and RTP through the NAT", func(t *testing.T) {
		reply := expect(t, l.Phone1, "udp", any0, ap(lab.SBC, 5060), lab.Reached)
		if !strings.HasPrefix(reply, lab.WANGateway.Addr().String()+":") {
			t.Errorf("SBC saw the phone as %q, want the WAN address (masquerade)", reply)
		}
		expect(t, l.Phone1, "tcp", any0, ap(lab.SBC, 5061), lab.Reached)
		expect(t, l.Phone2, "udp", any0, ap(lab.SBC, 40000), lab.Reached)
		expect(t, l.Phone2, "udp", any0, ap(lab.SBC2, 5060), lab.Reached)
		expect(t, l.Phone1, "udp", any0, ap(lab.SBC6, 5060), lab.Reached)
		expect(t, l.Phone1, "tcp", any0, ap(lab.Platform, 443), lab.Reached)
	})
	t.Run("phone cannot reach hosts or ports not allowlisted", func(t *testing.T) {
		before := gw.status().Firewall.Counters["blocked_not_allowlisted"].Packets
		expect(t, l.Phone1, "udp", any0, ap(lab.Unlisted, 5060), lab.Silent)
		expect(t, l.Phone1, "tcp", any0, ap(lab.Unlisted, 80), lab.Silent)
		expect(t, l.Phone1, "udp", any0, ap(lab.Unlisted6, 5060), lab.Silent)
		expect(t, l.Phone1, "tcp", any0, ap(lab.SBC, 22), lab.Silent) // allowlisted host, other port
		if after := gw.status().Firewall.Counters["blocked_not_allowlisted"].Packets; after < before+4 {
			t.Errorf("blocked_not_allowlisted went from %d to %d, want +4 at least", before, after)
		}
	})
	t.Run("phones and LAN cannot reach each other", func(t *testing.T) {
		before := gw.status().Firewall.Counters["blocked_lan"].Packets
		expect(t, l.Phone1, "tcp", any0, ap(lab.LANPCAddr.Addr(), 80), lab.Silent)
		expect(t, l.LANPC, "udp", any0, ap(lab.Phone1Addr.Addr(), 5060), lab.Silent)
		if after := gw.status().Firewall.Counters["blocked_lan"].Packets; after < before+2 {
			t.Errorf("blocked_lan went from %d to %d, want +2 at least", before, after)
		}
	})
	t.Run("LAN PC reaches the internet unaffected", func(t *testing.T) {
		expect(t, l.LANPC, "tcp", any0, ap(lab.Unlisted, 80), lab.Reached)
	})
	t.Run("router services other than DHCP, DNS, NTP are closed to phones", func(t *testing.T) {
		before := gw.status().Firewall.Counters["blocked_router"].Packets
		expect(t, l.Phone1, "tcp", any0, ap(lab.VoIPGateway4.Addr(), 22), lab.Silent)
		// The same port from the LAN is refused by the (listener-less) router: the drop is voipgw's.
		expect(t, l.LANPC, "tcp", any0, ap(lab.LANGateway.Addr(), 22), lab.Refused)
		if after := gw.status().Firewall.Counters["blocked_router"].Packets; after <= before {
			t.Errorf("blocked_router did not count the probe")
		}
	})
	t.Run("unsolicited inbound to a phone is dropped", func(t *testing.T) {
		before := gw.status().Firewall.Counters["blocked_inbound"].Packets
		expect(t, l.Inet, "udp", ap(lab.Unlisted, 0), ap(lab.Phone1Addr.Addr(), 5060), lab.Silent)
		if after := gw.status().Firewall.Counters["blocked_inbound"].Packets; after <= before {
			t.Errorf("blocked_inbound did not count the probe")
		}
	})
	t.Run("a port scan puts the scanner in the set; the platform never", func(t *testing.T) {
		wan := lab.WANGateway.Addr()
		firstSilent := 0
		for i := 0; i < 25; i++ {
			got, _, err := lab.Probe(l.Inet, "tcp", ap(lab.Scanner, 0), ap(wan, uint16(2000+i)), 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if got == lab.Silent && firstSilent == 0 {
				firstSilent = i + 1
			}
			if firstSilent == 0 && got != lab.Refused {
				t.Fatalf("probe %d: %s before detection, want refused", i+1, got)
			}
			if firstSilent != 0 && got != lab.Silent {
				t.Errorf("probe %d after detection: %s, want silent", i+1, got)
			}
		}
		if firstSilent == 0 || firstSilent > 15 {
			t.Fatalf("scanner detected at probe %d, want within the first 10-15", firstSilent)
		}
		t.Logf("scanner silenced from probe %d on", firstSilent)
		// The platform makes as many unsolicited attempts and is never blocked.
		for i := 0; i < 25; i++ {
			got, _, err := lab.Probe(l.Inet, "tcp", ap(lab.SBC, 0), ap(wan, uint16(3000+i)), 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if got != lab.Refused {
				t.Fatalf("platform probe %d: %s, want refused (never treated as scanner)", i+1, got)
			}
		}
		st := gw.status()
		if len(st.Scanners) != 1 || !strings.HasPrefix(st.Scanners[0], lab.Scanner.String()+" ") {
			t.Errorf("scanners = %q, want only %s", st.Scanners, lab.Scanner)
		}
		// The scanner is ignored for everything now, also for an allowlisted phone flow's ports.
		expect(t, l.Inet, "udp", ap(lab.Scanner, 0), ap(wan, 5060), lab.Silent)
	})
	t.Run("status reads the truth from the kernel", func(t *testing.T) {
		st := gw.status()
		if !st.Interface.Exists || !st.Interface.Up {
			t.Errorf("interface: %+v", st.Interface)
		}
		found := false
		for _, a := range st.Interface.Addrs {
			found = found || a == lab.VoIPGateway4
		}
		if !found {
			t.Errorf("interface addresses %v lack %s", st.Interface.Addrs, lab.VoIPGateway4)
		}
		if !st.Firewall.Present || st.Firewall.ConfigHash == "" || st.Firewall.ConfigHash != st.ConfigHash {
			t.Errorf("firewall: present %v, kernel hash %q, config hash %q", st.Firewall.Present, st.Firewall.ConfigHash, st.ConfigHash)
		}
		if st.Firewall.Counters["allowed"].Packets == 0 {
			t.Errorf("allowed counter is 0 after allowed flows")
		}
		if len(st.Problems) != 0 {
			t.Errorf("problems: %v", st.Problems)
		}
	})
	t.Run("apply twice changes nothing", func(t *testing.T) {
		before := canonicalRuleset(gw.ruleset())
		_, err := gw.run("apply")
		if err != nil {
			t.Fatal(err)
		}
		if after := canonicalRuleset(gw.ruleset()); after != before {
			t.Errorf("second apply changed the ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// The scanner learned before the re-apply is still in the set.
		if st := gw.status(); len(st.Scanners) != 1 {
			t.Errorf("scanners after re-apply: %q", st.Scanners)
		}
	})
	t.Run("a bad config is refused and the table kept", func(t *testing.T) {
		before := canonicalRuleset(gw.ruleset())
		bad := gw.config + ".bad"
		os.WriteFile(bad, []byte(strings.Replace(lab.Config(""), "option ipaddr '192.0.2.1/25'", "option ipaddr '192.0.2.300/25'", 1)), 0o644)
		out, err := l.GW.Run(voipgwBin, "apply", "--config", bad, "--state-dir", gw.stateDir)
		if err == nil {
			t.Fatalf("apply of a bad config succeeded:\n%s", out)
		}
		if !strings.Contains(out, "voipgw.voice.ipaddr='192.0.2.300/25'") {
			t.Errorf("error does not name section, option and value:\n%s", out)
		}
		if after := canonicalRuleset(gw.ruleset()); after != before {
			t.Errorf("failed apply changed the ruleset")
		}
	})
	t.Run("down removes exactly what voipgw created", func(t *testing.T) {
		gw.mustRun("down")
		if rs := strings.TrimSpace(gw.ruleset()); rs != "" {
			t.Errorf("ruleset after down:\n%s", rs)
		}
		out, _ := l.GW.Run("ip", "-br", "addr", "show", "dev", lab.GWVoIPIf)
		if strings.Contains(out, "192.0.2.1/") || strings.Contains(out, "2001:db8:20::1/") {
			t.Errorf("voipgw's addresses remain: %s", out)
		}
		if _, err := l.GW.Run("ip", "link", "show", lab.GWVoIPIf); err != nil {
			t.Errorf("the dedicated port itself must stay: %v", err)
		}
		if _, err := os.Stat(filepath.Join(gw.stateDir, "state.json")); !os.IsNotExist(err) {
			t.Errorf("state record remains after down")
		}
	})
}

var elemTimeouts = regexp.MustCompile(` (timeout|expires) [0-9dhms]+`)

// canonicalRuleset drops what legitimately changes between listings: counter values
// and element timeouts.
//
// Elements of dynamic sets are left out: they are the packet path's state (a
// media flow, a mapping, a tick), which expires on its own between two listings
// — on a slow VM even during one apply. Tests of that state read it themselves
// (the scanners after a re-apply, the full-cone maps).
func canonicalRuleset(s string) string {
	var out []string
	dynamic, skipping := false, false
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case skipping:
			skipping = !strings.HasSuffix(l, "}")
			continue
		case strings.HasPrefix(l, "set ") || strings.HasPrefix(l, "map "):
			dynamic = false
		case strings.HasPrefix(l, "flags ") && strings.Contains(l, "dynamic"):
			dynamic = true
		case dynamic && strings.HasPrefix(l, "elements = {"):
			skipping = !strings.HasSuffix(l, "}")
			continue
		}
		if strings.HasPrefix(l, "packets ") {
			continue
		}
		l = elemTimeouts.ReplaceAllString(l, "")
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
