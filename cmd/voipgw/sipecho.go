package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/voipgw/voipgw/sipfix"
)

var sipEchoListen string

func init() {
	register("sip-echo", command{order: 80,
		summary: "run a SIP echo (UAS) that answers each request with the request as it arrived (for diagnose --sip-echo)",
		run:     cmdSIPEcho,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&sipEchoListen, "listen", "0.0.0.0:5060", "UDP and TCP address to answer on")
		},
	})
	diagnoseChecks = append(diagnoseChecks, diagnoseCheck{
		flag:  "sip-echo",
		usage: "HOST:PORT of a voipgw sip-echo: send OPTIONS, REGISTER and INVITE over UDP and TCP and compare what it saw (SIP ALG check)",
		run:   diagnoseSIPEcho,
	})
}

func cmdSIPEcho(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	addr, err := netip.ParseAddrPort(sipEchoListen)
	if err != nil {
		return usageError{fmt.Errorf("--listen %q: want IP:PORT", sipEchoListen)}
	}
	e, err := sipfix.ListenEcho(addr, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "sip-echo listening on %s (udp, tcp)\n", addr)
	return e.Serve(ctx)
}

func diagnoseSIPEcho(ctx context.Context, target string, o *options, out io.Writer, log *slog.Logger) error {
	server, err := resolveTarget(ctx, target)
	if err != nil {
		return err
	}
	var all []sipfix.Diff
	for _, tr := range []string{"udp", "tcp"} {
		reqs, err := sipfix.Probe(ctx, server, tr, 3*time.Second)
		if err != nil {
			return err
		}
		for _, r := range reqs {
			verdict := "unmodified"
			if len(r.Diffs) > 0 {
				var d []string
				for _, x := range r.Diffs {
					d = append(d, x.String())
				}
				verdict = "REWRITTEN: " + strings.Join(d, "; ")
			}
			fmt.Fprintf(out, "%s %-8s from %s, echo saw %s: %s\n", tr, r.Method, r.Local, r.EchoSaw, verdict)
			all = append(all, r.Diffs...)
		}
	}
	fmt.Fprintln(out, sipfix.Verdict(all))
	if len(all) > 0 {
		return fmt.Errorf("SIP ALG detected")
	}
	return nil
}

// resolveTarget accepts IP:PORT or HOST:PORT (default port 5060).
func resolveTarget(ctx context.Context, target string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(target); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		host, port = target, "5060"
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %v", host, err)
	}
	return netip.ParseAddrPort(net.JoinHostPort(addrs[0].Unmap().String(), port))
}
