// Command voipgw-lab runs the voipgw demo in throw-away network namespaces: two
// phones, a LAN PC, the gateway and an "internet" with a fake SIP platform. It
// applies voipgw on the gateway, shows which traffic passes and which is dropped,
// prints `voipgw status`, takes voipgw down and removes the lab, also on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/voipgw/voipgw/lab"
)

func main() {
	bin := flag.String("voipgw", "build/amd64/voipgw", "the voipgw binary to demonstrate")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "voipgw-lab: run as root (it creates network namespaces)")
		os.Exit(2)
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := demo(abs); err != nil {
		fmt.Fprintln(os.Stderr, "voipgw-lab:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("\n\033[1m== "+format+"\033[0m\n", a...) }

func demo(bin string) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("building the lab (network namespaces, TEST-NET addresses only)")
	l, err := lab.New(fmt.Sprintf("vgdemo%d", os.Getpid()%10000))
	if err != nil {
		return err
	}
	defer func() {
		step("removing the lab")
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := l.StartPlatform(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "voipgw-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "voipgw")
	if err := os.WriteFile(cfg, []byte(lab.Config("")), 0o644); err != nil {
		return err
	}
	fmt.Printf("config %s:\n%s\n", cfg, lab.Config(""))
	voipgw := func(args ...string) error {
		args = append(args, "--config", cfg, "--state-dir", filepath.Join(dir, "state"))
		out, err := l.GW.Run(bin, args...)
		fmt.Print(out)
		return err
	}

	step("voipgw apply (on the gateway)")
	if err := voipgw("apply"); err != nil {
		return err
	}
	defer func() {
		step("voipgw down")
		if derr := voipgw("down"); derr != nil && err == nil {
			err = derr
		}
	}()

	step("traffic")
	checks := []struct {
		what  string
		from  *lab.NS
		proto string
		src   netip.AddrPort
		dst   netip.AddrPort
	}{
		{"phone1 → sbc.icvoip.net SIP", l.Phone1, "udp", netip.AddrPort{}, netip.AddrPortFrom(lab.SBC, 5060)},
		{"phone1 → sbc.icvoip.net SIP-TLS", l.Phone1, "tcp", netip.AddrPort{}, netip.AddrPortFrom(lab.SBC, 5061)},
		{"phone2 → sbc.icvoip.net RTP", l.Phone2, "udp", netip.AddrPort{}, netip.AddrPortFrom(lab.SBC, 40000)},
		{"phone1 → sbc.icvoip.net SIP over IPv6", l.Phone1, "udp", netip.AddrPort{}, netip.AddrPortFrom(lab.SBC6, 5060)},
		{"phone1 → ws1.icvoip.net HTTPS", l.Phone1, "tcp", netip.AddrPort{}, netip.AddrPortFrom(lab.Platform, 443)},
		{"phone1 → unlisted host HTTP", l.Phone1, "tcp", netip.AddrPort{}, netip.AddrPortFrom(lab.Unlisted, 80)},
		{"phone1 → unlisted host SIP", l.Phone1, "udp", netip.AddrPort{}, netip.AddrPortFrom(lab.Unlisted, 5060)},
		{"phone1 → LAN PC", l.Phone1, "tcp", netip.AddrPort{}, netip.AddrPortFrom(lab.LANPCAddr.Addr(), 80)},
		{"LAN PC → phone1", l.LANPC, "udp", netip.AddrPort{}, netip.AddrPortFrom(lab.Phone1Addr.Addr(), 5060)},
		{"phone1 → router ssh", l.Phone1, "tcp", netip.AddrPort{}, netip.AddrPortFrom(lab.VoIPGateway4.Addr(), 22)},
		{"internet → phone1 (unsolicited)", l.Inet, "udp", netip.AddrPortFrom(lab.Unlisted, 0), netip.AddrPortFrom(lab.Phone1Addr.Addr(), 5060)},
		{"LAN PC → internet", l.LANPC, "tcp", netip.AddrPort{}, netip.AddrPortFrom(lab.Unlisted, 80)},
	}
	for _, c := range checks {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		got, reply, err := lab.Probe(c.from, c.proto, c.src, c.dst, 1500*time.Millisecond)
		if err != nil {
			return err
		}
		note := ""
		if reply != "" {
			note = "(peer saw " + firstField(reply) + ")"
		}
		fmt.Printf("  %-40s %-4s %-24s %-8s %s\n", c.what, c.proto, c.dst, got, note)
	}

	step("port scan from 203.0.113.99 against the router's WAN address")
	for i := 0; i < 20 && ctx.Err() == nil; i++ {
		got, _, err := lab.Probe(l.Inet, "tcp", netip.AddrPortFrom(lab.Scanner, 0), netip.AddrPortFrom(lab.WANGateway.Addr(), uint16(1000+i)), 300*time.Millisecond)
		if err != nil {
			return err
		}
		fmt.Printf("  probe %2d → port %d: %s\n", i+1, 1000+i, got)
	}

	step("voipgw status")
	_ = voipgw("status")
	return ctx.Err()
}

func firstField(s string) string {
	for i, r := range s {
		if r == ' ' || r == '\n' {
			return s[:i]
		}
	}
	return s
}
