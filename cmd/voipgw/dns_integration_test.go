package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/lab"
)

// daemon is `voipgw run` in the gateway namespace.
type daemonProc struct {
	cmd *exec.Cmd
	log lab.SyncBuffer
}

func (d *daemonProc) Log() string { return d.log.String() }

// startDaemon starts `voipgw run`; it is stopped (SIGTERM) when the test ends.
func startDaemon(t *testing.T, gw *gwCmd) *daemonProc {
	t.Helper()
	d := &daemonProc{}
	d.cmd = exec.Command("ip", "netns", "exec", gw.l.GW.Name, voipgwBin, "run", "--config", gw.config, "--state-dir", gw.stateDir)
	d.cmd.Stdout, d.cmd.Stderr = &d.log, &d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start voipgw run: %v", err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
		if t.Failed() {
			t.Logf("voipgw run log:\n%s", d.Log())
		}
	})
	return d
}

// waitFor polls cond (every 100 ms, up to 15 s): the daemon's start-up is not timed,
// only waited for.
func waitFor(t *testing.T, what string, d *daemonProc, cond func() bool) {
	t.Helper()
	for i := 0; i < 150; i++ {
		if cond() {
			return
		}
		if d != nil && d.cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

const dnsTestConfig = `
config allow 'wild'
	list dest '*.wild.example'
	list port 'udp/5060'
	list port 'tcp/80'

config dns 'dns'
	option ttl_floor '2'
	option learned_max '16'
`

// dnsLab is the lab with the zone server as the forwarder's upstream.
func dnsLab(t *testing.T, extra string) (*lab.Lab, *gwCmd, *lab.Zone) {
	t.Helper()
	l, gw := newLab(t)
	z := &lab.Zone{}
	z.Set("phone.wild.example", lab.WildHost)
	z.Set("other.example", lab.OtherHost)
	z.Set("short.wild.example", lab.ShortHost)
	z.Synth("flood.wild.example", func(name string) netip.Addr {
		var n int
		fmt.Sscanf(name, "h%d.", &n)
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + n%100)})
	})
	if err := l.StartZone(z); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(lab.Config(extra), "list upstream '"+lab.DNSServer.String()+"'", "list upstream '"+lab.ZoneServer.String()+"'", 1)
	if err := os.WriteFile(gw.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return l, gw, z
}

var gw4DNS = netip.AddrPortFrom(lab.VoIPGateway4.Addr(), 53)

func resolveFrom(t *testing.T, ns *lab.NS, server netip.AddrPort, proto, name string) ([]netip.Addr, int) {
	t.Helper()
	addrs, resp, err := lab.Resolve(ns, server, proto, name, dns.TypeA, 3*time.Second)
	if err != nil {
		t.Fatalf("resolve %s via %s/%s: %v", name, server, proto, err)
	}
	return addrs, resp.Rcode
}

func dnsFeature(t *testing.T, st statusReport) dnsStatusValue {
	t.Helper()
	var v dnsStatusValue
	b, _ := json.Marshal(st.Features["dns"])
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("status dns: %v", err)
	}
	return v
}

func learnedAddrs(t *testing.T, gw *gwCmd) map[netip.Addr]learnedView {
	t.Helper()
	out := map[netip.Addr]learnedView{}
	for _, l := range dnsFeature(t, gw.status()).Learned {
		out[l.Addr] = l
	}
	return out
}

func TestDNSForwarderInLab(t *testing.T) {
	l, gw, z := dnsLab(t, dnsTestConfig)
	d := startDaemon(t, gw)
	waitFor(t, "the forwarder to answer", d, func() bool {
		_, _, err := lab.Resolve(l.Phone1, gw4DNS, "udp", "ready.example", dns.TypeA, 300*time.Millisecond)
		return err == nil
	})
	blocked := func() uint64 { return gw.status().Firewall.Counters[firewall.CounterNotAllowlisted].Packets }

	t.Run("a wildcard name is learned before the answer: the first packet passes", func(t *testing.T) {
		expect(t, l.Phone2, "tcp", any0, ap(lab.WildHost, 80), lab.Silent) // not allowed before
		before := blocked()
		addrs, _ := resolveFrom(t, l.Phone1, gw4DNS, "udp", "phone.wild.example")
		if len(addrs) != 1 || addrs[0] != lab.WildHost {
			t.Fatalf("answer %v", addrs)
		}
		expect(t, l.Phone1, "udp", any0, ap(lab.WildHost, 5060), lab.Reached)
		expect(t, l.Phone1, "tcp", any0, ap(lab.WildHost, 80), lab.Reached)
		if after := blocked(); after != before {
			t.Errorf("blocked_not_allowlisted went from %d to %d: a first packet was dropped", before, after)
		}
		expect(t, l.Phone1, "tcp", any0, ap(lab.WildHost, 443), lab.Silent) // learned with the entry's ports only
		lv, ok := learnedAddrs(t, gw)[lab.WildHost]
		if !ok || lv.Ports != "tcp/80,udp/5060" || strings.Join(lv.Names, " ") != "phone.wild.example" {
			t.Errorf("learned set has %+v for %s", lv, lab.WildHost)
		}
	})
	t.Run("a name not on the allowlist resolves but stays blocked", func(t *testing.T) {
		addrs, _ := resolveFrom(t, l.Phone1, gw4DNS, "udp", "other.example")
		if len(addrs) != 1 || addrs[0] != lab.OtherHost {
			t.Fatalf("answer %v", addrs)
		}
		expect(t, l.Phone1, "udp", any0, ap(lab.OtherHost, 5060), lab.Silent)
		if _, ok := learnedAddrs(t, gw)[lab.OtherHost]; ok {
			t.Errorf("%s was learned", lab.OtherHost)
		}
	})
	t.Run("DNS to an outside resolver never reaches it", func(t *testing.T) {
		// The lab's resolver knows unlisted.example; the forwarder's upstream does
		// not. An NXDOMAIN proves the query was answered by the forwarder.
		for _, proto := range []string{"udp", "tcp"} {
			addrs, rcode := resolveFrom(t, l.Phone1, netip.AddrPortFrom(lab.DNSServer, 53), proto, "unlisted.example")
			if rcode != dns.RcodeNameError || len(addrs) != 0 {
				t.Errorf("%s: the outside resolver answered (%s %v)", proto, dns.RcodeToString[rcode], addrs)
			}
		}
		// Its answers through the redirect are learned like any other.
		addrs, _ := resolveFrom(t, l.Phone2, netip.AddrPortFrom(lab.DNSServer, 53), "udp", "phone.wild.example")
		if len(addrs) != 1 || addrs[0] != lab.WildHost {
			t.Errorf("redirected query answered %v", addrs)
		}
	})
	t.Run("spoofed and unsolicited responses add nothing", func(t *testing.T) {
		// An unsolicited response sent to the forwarder by a phone.
		err := l.Phone1.Do(func() error {
			c, err := net.Dial("udp", gw4DNS.String())
			if err != nil {
				return err
			}
			defer c.Close()
			m := new(dns.Msg)
			m.SetQuestion("spoof.wild.example.", dns.TypeA)
			m.Response = true
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "spoof.wild.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: lab.SpoofHost.AsSlice()}}
			b, _ := m.Pack()
			_, err = c.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// Replies from the upstream's own address that do not match the query:
		// a wrong ID, and the right ID for another question.
		z.SetBeforeAnswer(func(w dns.ResponseWriter, req *dns.Msg) {
			if _, udp := w.RemoteAddr().(*net.UDPAddr); !udp || req.Question[0].Name != "victim.wild.example." {
				return
			}
			for _, c := range []struct {
				id   uint16
				name string
			}{{req.Id ^ 0x5a5a, req.Question[0].Name}, {req.Id, "evil.wild.example."}} {
				m := new(dns.Msg)
				m.SetQuestion(c.name, dns.TypeA)
				m.Id, m.Response = c.id, true
				m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: c.name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: lab.SpoofHost.AsSlice()}}
				w.WriteMsg(m)
			}
		})
		defer z.SetBeforeAnswer(nil)
		z.Set("victim.wild.example", lab.WildHost)
		discardedBefore := dnsFeature(t, gw.status()).Daemon.Stats.Discarded
		addrs, _ := resolveFrom(t, l.Phone1, gw4DNS, "udp", "victim.wild.example")
		if len(addrs) != 1 || addrs[0] != lab.WildHost {
			t.Errorf("answer %v, want the real one (%s)", addrs, lab.WildHost)
		}
		expect(t, l.Phone1, "udp", any0, ap(lab.SpoofHost, 5060), lab.Silent)
		if _, ok := learnedAddrs(t, gw)[lab.SpoofHost]; ok {
			t.Errorf("%s was learned from a spoofed response", lab.SpoofHost)
		}
		waitFor(t, "the daemon to publish its counters", d, func() bool {
			return dnsFeature(t, gw.status()).Daemon.Stats.Discarded >= discardedBefore+2
		})
	})
	t.Run("a learned entry expires after its TTL", func(t *testing.T) {
		z.SetTTL(1) // below the 2 s floor of the test config: the floor applies
		defer z.SetTTL(0)
		resolveFrom(t, l.Phone1, gw4DNS, "udp", "short.wild.example")
		expect(t, l.Phone1, "udp", any0, ap(lab.ShortHost, 5060), lab.Reached)
		time.Sleep(2500 * time.Millisecond)
		// A new flow (new source port) after the timeout is dropped again.
		expect(t, l.Phone1, "udp", any0, ap(lab.ShortHost, 5060), lab.Silent)
		if _, ok := learnedAddrs(t, gw)[lab.ShortHost]; ok {
			t.Errorf("%s still in the learned set after its timeout", lab.ShortHost)
		}
	})
	t.Run("the learned-set cap holds under a flood of distinct answers", func(t *testing.T) {
		const names = 100
		for i := 1; i <= names; i++ {
			addrs, rcode := resolveFrom(t, l.Phone2, gw4DNS, "udp", fmt.Sprintf("h%d.flood.wild.example", i))
			if rcode != dns.RcodeSuccess || len(addrs) != 1 {
				t.Fatalf("flood answer %d: %s %v", i, dns.RcodeToString[rcode], addrs)
			}
		}
		st := gw.status()
		if n := st.Firewall.SetSizes[firewall.SetLearned4]; n > 16 || n < 14 {
			t.Errorf("learned4 holds %d elements, cap 16 (2 per address)", n)
		}
		last := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + names%100)})
		if _, ok := learnedAddrs(t, gw)[last]; !ok {
			t.Errorf("the newest address %s was not learned", last)
		}
		expect(t, l.Phone2, "udp", any0, ap(lab.WildHost, 5060), lab.Silent) // evicted: oldest
		waitFor(t, "the daemon to publish its counters", d, func() bool {
			s := dnsFeature(t, gw.status()).Daemon.Stats
			return s.Evicted >= names-8 && s.LearnErrors == 0
		})
	})
	t.Run("SIGHUP keeps learned entries that still match and drops the others", func(t *testing.T) {
		resolveFrom(t, l.Phone1, gw4DNS, "udp", "phone.wild.example")
		d.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the re-apply", d, func() bool { return strings.Count(d.Log(), "re-applied") >= 1 })
		expect(t, l.Phone1, "tcp", any0, ap(lab.WildHost, 80), lab.Reached) // no new DNS query

		// Narrow the entry to tcp/80: udp/5060 must go, tcp/80 stay.
		cfg, _ := os.ReadFile(gw.config)
		os.WriteFile(gw.config, []byte(strings.Replace(string(cfg), "\tlist port 'udp/5060'\n", "", 1)), 0o644)
		d.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the second re-apply", d, func() bool { return strings.Count(d.Log(), "re-applied") >= 2 })
		expect(t, l.Phone1, "tcp", any0, ap(lab.WildHost, 80), lab.Reached)
		expect(t, l.Phone1, "udp", any0, ap(lab.WildHost, 5060), lab.Silent)
		if lv := learnedAddrs(t, gw)[lab.WildHost]; lv.Ports != "tcp/80" {
			t.Errorf("after narrowing: learned ports %q, want tcp/80", lv.Ports)
		}
	})
}

// A DNS server that holds port 53 (dnsmasq) is a clear error naming the fix.
func TestDNSPortInUse(t *testing.T) {
	l, gw, _ := dnsLab(t, dnsTestConfig)
	var held net.PacketConn
	if err := l.GW.Do(func() error {
		var err error
		held, err = net.ListenPacket("udp", "0.0.0.0:53") // as dnsmasq binds it
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	d := startDaemon(t, gw)
	waitFor(t, "the error in the log", d, func() bool { return strings.Contains(d.Log(), "holds port 53") })
	log := d.Log()
	for _, want := range []string{"192.0.2.1", "notinterface", "voipgw.dns.forwarder='0'"} {
		if !strings.Contains(log, want) {
			t.Errorf("error does not name %q:\n%s", want, log)
		}
	}
}
