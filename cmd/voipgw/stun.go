package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/voipgw/voipgw/media/stun"
)

var stunListen, stunPorts string

func init() {
	register("stun-server", command{order: 81,
		summary: "run an RFC 5780 STUN server on two addresses and two ports (for diagnose --stun)",
		run:     cmdSTUNServer,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&stunListen, "listen", "", "two local addresses, A1,A2 (primary, alternate)")
			fs.StringVar(&stunPorts, "port", "3478,3479", "two UDP ports, P1,P2 (primary, alternate)")
		},
	})
	diagnoseChecks = append(diagnoseChecks, diagnoseCheck{
		flag:  "stun",
		usage: "HOST[:PORT] of an RFC 5780 STUN server (voipgw stun-server): NAT mapping and filtering behaviour as a phone sees it",
		run:   diagnoseSTUN,
	})
}

func cmdSTUNServer(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	var addrs [2]netip.Addr
	var ports [2]uint16
	as := strings.Split(stunListen, ",")
	if len(as) != 2 {
		return usageError{fmt.Errorf("--listen %q: want two addresses A1,A2 (RFC 5780 answers from an alternate address)", stunListen)}
	}
	for i, s := range as {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return usageError{fmt.Errorf("--listen %q: %w", stunListen, err)}
		}
		addrs[i] = a
	}
	ps := strings.Split(stunPorts, ",")
	if len(ps) != 2 {
		return usageError{fmt.Errorf("--port %q: want two ports P1,P2", stunPorts)}
	}
	for i, s := range ps {
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
		if err != nil || n == 0 {
			return usageError{fmt.Errorf("--port %q: %q is not a port 1-65535", stunPorts, s)}
		}
		ports[i] = uint16(n)
	}
	if addrs[0] == addrs[1] || ports[0] == ports[1] || addrs[0].Is4() != addrs[1].Is4() {
		return usageError{fmt.Errorf("--listen %q --port %q: want two different addresses of one family and two different ports", stunListen, stunPorts)}
	}
	s, err := stun.Listen(addrs, ports)
	if err != nil {
		return err
	}
	s.Log = log
	log.Info("stun server listening", "addresses", stunListen, "ports", stunPorts)
	return s.Serve(ctx)
}

func diagnoseSTUN(ctx context.Context, target string, o *options, out io.Writer, log *slog.Logger) error {
	if _, _, err := net.SplitHostPort(target); err != nil {
		target = net.JoinHostPort(target, "3478")
	}
	server, err := resolveTarget(ctx, target)
	if err != nil {
		return err
	}
	c := &stun.Client{Server: server}
	if o.diagSource != "" {
		// cmdDiagnose checked it; from the VoIP gateway address the router's own
		// probe takes the phones' NAT rules (their subnet's masquerade and maps).
		c.Local, _ = netip.ParseAddr(o.diagSource)
	}
	r, err := c.Discover(ctx)
	if err != nil {
		return err
	}
	for _, s := range r.Steps {
		fmt.Fprintf(out, "  %s\n", s)
	}
	fmt.Fprintf(out, "mapping %s, filtering %s\n", r.Mapping, r.Filtering)
	fmt.Fprintln(out, r.Verdict())
	if !r.FullCone() {
		fmt.Fprintln(out, stun.Remedy)
		return fmt.Errorf("not a full cone NAT (%s)", r.Verdict())
	}
	return nil
}
