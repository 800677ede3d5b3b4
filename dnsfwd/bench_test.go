package dnsfwd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/lab"
)

// Benchmarks (scripts/bench-dns runs them): the forwarder's added latency against
// asking the upstream directly, and queries per second, on loopback. With root the
// learned sets are real kernel sets in a throw-away namespace; without, the fake
// learner stands in (and the kernel write is not measured).

type benchEnv struct {
	upstream netip.AddrPort
	fwd      netip.AddrPort
}

func setupBench(b *testing.B, max int) benchEnv {
	b.Helper()
	z := &lab.Zone{}
	z.Set("other.example", otherAddr)
	z.Set("phone.wild.example", wildAddr)
	var n atomic.Uint32
	z.Synth("uncached.example", func(string) netip.Addr { return otherAddr })
	z.Synth("flood.wild.example", func(string) netip.Addr {
		i := n.Add(1)
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	})
	up, stop, err := lab.ServeZone(netip.MustParseAddrPort("127.0.0.1:0"), z)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stop() })

	var learner Learner = newFake(1 << 30)
	if testing.Short() {
		b.Log("fake learner (-short)")
	} else if l, err := kernelLearner(b, max); err == nil {
		learner = l
	} else {
		b.Logf("fake learner: %v", err)
	}
	f, err := New(Config{
		Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Upstreams: []netip.AddrPort{up},
		Matcher:  firewall.NewMatcher([]firewall.LearnRule{{Dest: dest("*.wild.example"), Ports: ports("udp/5060", "tcp/80")}}),
		TTLFloor: time.Minute, TTLMax: time.Hour, Max: max,
	}, learner)
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, []net.PacketConn{pc}, nil) }()
	b.Cleanup(func() { cancel(); <-done })
	env := benchEnv{upstream: up, fwd: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	// Wait until both answer.
	for _, s := range []netip.AddrPort{env.upstream, env.fwd} {
		for i := 0; ; i++ {
			if _, err := query(s, "other.example"); err == nil {
				break
			} else if i == 50 {
				b.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return env
}

// kernelLearner installs a table with learned sets in a new namespace.
func kernelLearner(b *testing.B, max int) (*firewall.Learner, error) {
	lab.RequireRoot(b)
	ns := lab.TestNS(b, "bench")
	spec := firewall.Spec{Table: "voipgw", VoIPIf: "voip0", WAN: "wan0", Subnet4: netip.MustParsePrefix("192.0.2.0/25"),
		DNS: firewall.DNSSpec{Forwarder: true, Gateway4: netip.MustParseAddr("192.0.2.1"), LearnedMax: uint32(max), TTLFloor: time.Minute}}
	t, err := firewall.Build(spec)
	if err != nil {
		return nil, err
	}
	var l *firewall.Learner
	err = ns.Do(func() error {
		if err := firewall.Apply(t); err != nil {
			return err
		}
		l, err = firewall.NewLearner("voipgw")
		return err
	})
	if err == nil {
		b.Cleanup(func() { l.Close() })
	}
	return l, err
}

func query(server netip.AddrPort, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server.String())
	return r, err
}

func benchQueries(b *testing.B, server netip.AddrPort, name func(i int) string) {
	b.ReportAllocs()
	lat := make([]time.Duration, 0, min(b.N, 1<<20))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := query(server, name(i)); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t0))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
	// The median as well as go test's mean: a few slow outliers (a GC, the shared
	// machine) move the mean, and the goal is stated for the median.
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-us")
}

// BenchmarkLatency: one query at a time (so ns/op is the latency seen by a phone).
func BenchmarkLatency(b *testing.B) {
	env := setupBench(b, config.DefaultLearnedMax) // the default cap: a flood evicts
	b.Run("upstream-direct", func(b *testing.B) {
		benchQueries(b, env.upstream, func(int) string { return "other.example" })
	})
	b.Run("forwarder-not-allowlisted", func(b *testing.B) {
		benchQueries(b, env.fwd, func(int) string { return "other.example" })
	})
	b.Run("forwarder-not-allowlisted-uncached", func(b *testing.B) { // a new name each time: the upstream is asked
		benchQueries(b, env.fwd, func(i int) string { return fmt.Sprintf("u%d.uncached.example", i) })
	})
	b.Run("forwarder-allowlisted-known", func(b *testing.B) { // learned already: no kernel write
		benchQueries(b, env.fwd, func(int) string { return "phone.wild.example" })
	})
	b.Run("forwarder-allowlisted-new-address", func(b *testing.B) { // a kernel write per query
		benchQueries(b, env.fwd, func(i int) string { return fmt.Sprintf("h%d.flood.wild.example", i) })
	})
	// The floor of any forwarder on loopback: a relay that does nothing but the two
	// extra hops (receive, send upstream, receive, send back), with blocking system
	// calls on one locked thread and one upstream socket — no parsing, no goroutine,
	// no socket per query. A miss through the real forwarder is compared with it.
	// (Every query through it goes upstream: it is the floor of a miss.)
	relay := startRelay(b, env.upstream)
	b.Run("relay-floor", func(b *testing.B) { // the same name as upstream-direct: the same work upstream
		benchQueries(b, relay, func(int) string { return "other.example" })
	})
	// The same relay the Go way: the runtime's poller for the listening socket and a
	// goroutine per datagram; then also a new upstream socket per query, as the
	// forwarder does (a new random source port per query: RFC 5452).
	for _, newSock := range []bool{false, true} {
		name := "relay-go"
		if newSock {
			name = "relay-go-socket-per-query"
		}
		r := startRelayGo(b, env.upstream, newSock)
		b.Run(name, func(b *testing.B) {
			benchQueries(b, r, func(int) string { return "other.example" })
		})
	}
}

// startRelayGo serves the Go relays of BenchmarkLatency until the benchmark ends.
func startRelayGo(b *testing.B, upstream netip.AddrPort, newSock bool) netip.AddrPort {
	b.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Addr: upstream.Addr().As4(), Port: int(upstream.Port())}
	dial := func() (int, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	fixed, err := dial()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			buf := make([]byte, 4096)
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			go func() { // (the rows ask one query at a time: the fixed socket has one reader)
				fd := fixed
				if newSock {
					var err error
					if fd, err = dial(); err != nil {
						return
					}
					defer unix.Close(fd)
				}
				if _, err := unix.Write(fd, buf[:n]); err != nil {
					return
				}
				m, err := unix.Read(fd, buf)
				if err != nil {
					return
				}
				pc.WriteToUDPAddrPort(buf[:m], from)
			}()
		}
	}()
	b.Cleanup(func() { pc.Close(); <-done; unix.Close(fixed) })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startRelay serves the floor relay of BenchmarkLatency on a loopback port until
// the benchmark ends.
func startRelay(b *testing.B, upstream netip.AddrPort) netip.AddrPort {
	b.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(lfd)
		b.Fatal(err)
	}
	loop := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(lfd, loop); err != nil {
		b.Fatal(err)
	}
	if err := unix.Connect(ufd, &unix.SockaddrInet4{Addr: upstream.Addr().As4(), Port: int(upstream.Port())}); err != nil {
		b.Fatal(err)
	}
	// A timeout on the listening socket lets the loop see the end of the benchmark.
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(lfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		b.Fatal(err)
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		b.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		buf := make([]byte, 4096)
		for !stop.Load() {
			n, from, err := unix.Recvfrom(lfd, buf, 0)
			if err != nil {
				continue // the timeout, or a stray error: look at stop again
			}
			if _, err := unix.Write(ufd, buf[:n]); err != nil {
				continue
			}
			m, err := unix.Read(ufd, buf)
			if err != nil {
				continue
			}
			_ = unix.Sendto(lfd, buf[:m], 0, from)
		}
	}()
	b.Cleanup(func() { stop.Store(true); <-done; unix.Close(lfd); unix.Close(ufd) })
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
}

// BenchmarkThroughput: 16 concurrent clients per core.
func BenchmarkThroughput(b *testing.B) {
	env := setupBench(b, config.DefaultLearnedMax) // the default cap: a flood evicts
	for _, c := range []struct {
		name   string
		server netip.AddrPort
		qname  func(i int64) string
	}{
		{"upstream-direct", env.upstream, func(int64) string { return "other.example" }},
		{"forwarder-not-allowlisted", env.fwd, func(int64) string { return "other.example" }},
		{"forwarder-not-allowlisted-uncached", env.fwd, func(i int64) string { return fmt.Sprintf("t%d.uncached.example", i) }},
		{"forwarder-allowlisted-new-address", env.fwd, func(i int64) string { return fmt.Sprintf("p%d.flood.wild.example", i) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var ctr atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := query(c.server, c.qname(ctr.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
		})
	}
}
