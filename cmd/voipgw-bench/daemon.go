package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/voipgw/voipgw/lab"
)

var (
	idleFor = flag.Duration("idle", 30*time.Second, "daemon: idle time (RSS sampled every second, CPU over the whole of it)")
	soakFor = flag.Duration("soak", 60*time.Second, "daemon: soak time with the phones' traffic")
	phones  = flag.Int("phones", 50, "daemon: phone sockets during the soak (RTP-like 50 pps each, a DNS query every 5 s)")
)

const clkTck = 100 // USER_HZ on Linux

// benchDaemon runs `voipgw run` in the gateway (default profiles, resolved through
// the lab's name server; forwarder and DHCP on) and reads its RSS and CPU from /proc.
func benchDaemon(e *env) error {
	if err := e.l.StartPlatform(); err != nil {
		return err
	}
	cfg, err := e.write("daemon", lab.Config("\nconfig dhcp 'dhcp'\n\toption enabled '1'\n"))
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", e.l.GW.Name, *voipgwBin, "run", "--config", cfg, "--state-dir", cfg+".state")
	logf, err := os.Create(cfg + ".log")
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// The Go runtime's line per GC (heap before → after → live, goal) tells a leak
	// (live heap grows) from a heap that only has not reached its goal yet.
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	if err := cmd.Start(); err != nil {
		return err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	cleanMu.Lock()
	cleanups = append(cleanups, stop) // before the lab's removal (cleanups run last-first)
	cleanMu.Unlock()
	pid := cmd.Process.Pid // ip netns exec execs voipgw in place: same pid
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := e.l.GW.Run("nft", "list", "chain", "inet", "voipgw", "voip_out"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("voipgw run: table not installed within 20 s (see " + cfg + ".log)")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // forwarder, DHCP, guard started
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != *voipgwBin {
		return fmt.Errorf("pid %d is %q, not voipgw", pid, exe)
	}

	fmt.Printf("\ndaemon: voipgw run (pid %d), idle %v, then %d phones for %v (RTP-like: 172-byte payload every 20 ms to an echo, DNS query via the gateway every 5 s)\n",
		pid, *idleFor, *phones, *soakFor)
	cpu0, err := cpuTicks(pid)
	if err != nil {
		return err
	}
	idle, err := sampleRSS(pid, *idleFor)
	if err != nil {
		return err
	}
	cpu1, _ := cpuTicks(pid)
	idleCPU := float64(cpu1-cpu0) / clkTck / idleFor.Seconds() * 100
	fmt.Println(idle.line("RSS idle"))
	anon, _ := statusKB(pid, "RssAnon:")
	file, _ := statusKB(pid, "RssFile:")
	fmt.Printf("RSS idle split: RssAnon %d KB (heap, stacks, runtime), RssFile %d KB (pages of the binary touched: shared, reclaimable)\n", anon, file)
	fmt.Printf("CPU idle: %d ticks over %v = %.3f%% of one core\n", cpu1-cpu0, *idleFor, idleCPU)

	ctx, cancel := context.WithCancel(context.Background())
	load, err := startPhones(ctx, e.l, *phones)
	if err != nil {
		cancel()
		return err
	}
	soak, err := sampleRSS(pid, *soakFor)
	cpu2, _ := cpuTicks(pid)
	cancel()
	load.wg.Wait()
	if err != nil {
		return err
	}
	fmt.Println(soak.line("RSS soak"))
	if n := len(soak.kb); n >= 20 {
		h := rssSamples{t: soak.t[n/2:], kb: soak.kb[n/2:]}
		fmt.Println(h.line("RSS soak, second half"))
	}
	fmt.Printf("CPU soak: %.2f%% of one core; phones sent %d datagrams, %d echoed back; DNS %d answered of %d\n",
		float64(cpu2-cpu1)/clkTck/soakFor.Seconds()*100, load.sent.Load(), load.echoed.Load(), load.dnsOK.Load(), load.dnsAsked.Load())
	if hwm, err := statusKB(pid, "VmHWM:"); err == nil {
		fmt.Printf("VmHWM (peak RSS since start, including the startup apply): %d KB\n", hwm)
	}
	if b, err := os.ReadFile(cfg + ".log"); err == nil {
		var gcs []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "gc ") {
				gcs = append(gcs, l)
			}
		}
		fmt.Printf("gctrace: %d collections; live heap (\"->N MB\") first and last:\n", len(gcs))
		if len(gcs) > 0 {
			fmt.Println("  " + gcs[0])
			for _, l := range gcs[max(1, len(gcs)-3):] {
				fmt.Println("  " + l)
			}
		}
	}
	if out, err := e.voipgw(cfg, "status"); err == nil {
		fmt.Printf("check: status: %s\n", oneLine(out, "allowed"))
	}
	stop()
	return nil
}

type rssSamples struct{ t, kb []float64 }

func (s rssSamples) line(label string) string {
	if len(s.kb) == 0 {
		return label + ": no samples"
	}
	mx := 0.0
	for _, v := range s.kb {
		mx = max(mx, v)
	}
	return fmt.Sprintf("%s: first %.0f KB, last %.0f KB, max %.0f KB, median %.0f KB, trend %+.1f KB/min over %d samples",
		label, s.kb[0], s.kb[len(s.kb)-1], mx, median(s.kb), slope(s.t, s.kb)*60, len(s.kb))
}

func sampleRSS(pid int, d time.Duration) (rssSamples, error) {
	var s rssSamples
	t0 := time.Now()
	for time.Since(t0) < d {
		kb, err := statusKB(pid, "VmRSS:")
		if err != nil {
			return s, err
		}
		s.t = append(s.t, time.Since(t0).Seconds())
		s.kb = append(s.kb, float64(kb))
		time.Sleep(time.Second)
	}
	return s, nil
}

func statusKB(pid int, key string) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == key {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// cpuTicks is utime+stime of the process (fields 14 and 15 of /proc/PID/stat).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + k, errors.Join(err1, err2)
}

type phoneLoad struct {
	wg                            sync.WaitGroup
	sent, echoed, dnsAsked, dnsOK atomic.Int64
}

// startPhones starts n UDP flows, alternately from phone1 and phone2, each to its
// own echo port on the SBC address (allowlisted by the cloudoe-sbc profile's RTP
// range), and a DNS query of an allowlisted name through the gateway every 5 s.
func startPhones(ctx context.Context, l *lab.Lab, n int) (*phoneLoad, error) {
	p := &phoneLoad{}
	var echoes []*net.UDPConn
	for i := range n {
		dst := netip.AddrPortFrom(lab.SBC, uint16(41000+2*i))
		var ec *net.UDPConn
		if err := l.Inet.Do(func() error {
			var err error
			ec, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(dst))
			return err
		}); err != nil {
			return nil, err
		}
		echoes = append(echoes, ec)
		ns := l.Phone1
		if i%2 == 1 {
			ns = l.Phone2
		}
		c, err := dialIn(ns, dst)
		if err != nil {
			return nil, err
		}
		dc, err := dialIn(ns, netip.AddrPortFrom(lab.VoIPGateway4.Addr(), 53))
		if err != nil {
			return nil, err
		}
		p.wg.Add(3)
		go func() { // echo
			defer p.wg.Done()
			buf := make([]byte, 2048)
			for {
				m, from, err := ec.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				_, _ = ec.WriteToUDPAddrPort(buf[:m], from)
			}
		}()
		go func() { // RTP-like sender and reader of the echoes
			defer p.wg.Done()
			defer c.Close()
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, err := c.Read(buf); err != nil {
						if errors.Is(err, net.ErrClosed) {
							return
						}
						continue // ICMP errors until the path is up
					}
					p.echoed.Add(1)
				}
			}()
			payload := make([]byte, 172)
			tk := time.NewTicker(20 * time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
					if _, err := c.Write(payload); err == nil {
						p.sent.Add(1)
					}
				}
			}
		}()
		go func() { // DNS
			defer p.wg.Done()
			defer dc.Close()
			co := &dns.Conn{Conn: dc}
			names := []string{"sbc.icvoip.net.", "ws1.icvoip.net.", "unlisted.example."}
			tk := time.NewTicker(5 * time.Second)
			defer tk.Stop()
			for k := 0; ; k++ {
				m := new(dns.Msg)
				m.SetQuestion(names[(i+k)%len(names)], dns.TypeA)
				p.dnsAsked.Add(1)
				_ = dc.SetDeadline(time.Now().Add(2 * time.Second))
				if co.WriteMsg(m) == nil {
					if r, err := co.ReadMsg(); err == nil && r.Rcode == dns.RcodeSuccess {
						p.dnsOK.Add(1)
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-tk.C:
				}
			}
		}()
	}
	go func() {
		<-ctx.Done()
		for _, ec := range echoes {
			ec.Close()
		}
	}()
	return p, nil
}
