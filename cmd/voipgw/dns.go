package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/voipgw/voipgw/dnsfwd"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/resolver"
)

// The DNS forwarder as a daemon component, and its part of `voipgw status`.

func init() {
	daemonComponents = append(daemonComponents, newDNSComponent)
	statusProviders = append(statusProviders, dnsStatus)
	featurePrinters["dns"] = printDNSStatus
}

const dnsStatusFile = "dns.json"

type dnsComponent struct {
	env *daemonEnv
	cfg dnsfwd.Config
}

func (c *dnsComponent) Name() string { return "dns" }

func newDNSComponent(env *daemonEnv) (component, error) {
	cfg := env.Config
	if !cfg.Forwarder.Enabled {
		return nil, nil
	}
	listen := []netip.Addr{cfg.Net.IPv4.Addr()}
	clients := []netip.Prefix{cfg.Net.Subnet4()}
	if cfg.Net.IPv6.IsValid() {
		listen = append(listen, cfg.Net.IPv6.Addr())
		clients = append(clients, cfg.Net.Subnet6())
	}
	ups := cfg.DNS.Upstream
	if len(ups) == 0 {
		// On OpenWrt this is dnsmasq on 127.0.0.1, which forwards to the ISP's
		// servers: no loop, since dnsmasq does not ask the forwarder.
		var err error
		if ups, err = resolver.SystemUpstreams("/etc/resolv.conf"); err != nil {
			return nil, fmt.Errorf("dns forwarder: %w (set list upstream in the dns section)", err)
		}
	}
	var kept []netip.AddrPort
	for _, u := range ups {
		if containsAddr(listen, u.Addr()) {
			env.Log.Warn("dns forwarder: ignoring an upstream that is the forwarder itself (loop)", "upstream", u)
			continue
		}
		kept = append(kept, u)
	}
	if len(kept) == 0 {
		return nil, errors.New("dns forwarder: no upstream resolver left (set list upstream in the dns section)")
	}
	return &dnsComponent{env: env, cfg: dnsfwd.Config{
		Listen: listen, Clients: clients, Upstreams: kept,
		Matcher:     firewall.NewMatcher(firewall.LearnRules(cfg)),
		StaticNames: firewall.HostNames(cfg),
		TTLFloor:    cfg.Forwarder.TTLFloor, TTLMax: cfg.Forwarder.TTLMax, Max: int(cfg.Forwarder.LearnedMax),
		Log: env.Log.With("component", "dns"),
	}}, nil
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a.Unmap() {
			return true
		}
	}
	return false
}

func (c *dnsComponent) Run(ctx context.Context) error {
	l, err := firewall.NewLearner(c.env.Table)
	if err != nil {
		return err
	}
	defer l.Close()
	f, err := dnsfwd.New(c.cfg, l)
	if err != nil {
		return err
	}
	c.env.Log.Info("dns forwarder listening", "on", fmt.Sprint(c.cfg.Listen), "upstream", fmt.Sprint(c.cfg.Upstreams),
		"names", len(c.cfg.StaticNames), "learned_max", c.cfg.Max)
	path := filepath.Join(c.env.StatusDir, dnsStatusFile)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			publishDNS(path, c.cfg, f.Stats())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err = f.Run(ctx)
	close(done)
	os.Remove(path)
	return err
}

// dnsPublished is what the daemon writes for `voipgw status`.
type dnsPublished struct {
	Listen    []netip.Addr     `json:"listen"`
	Upstreams []netip.AddrPort `json:"upstreams"`
	Stats     dnsfwd.Stats     `json:"stats"`
	At        time.Time        `json:"at"`
}

func publishDNS(path string, cfg dnsfwd.Config, st dnsfwd.Stats) {
	publishJSON(path, dnsPublished{Listen: cfg.Listen, Upstreams: cfg.Upstreams, Stats: st, At: time.Now().UTC()})
}

// dnsStatusValue is the forwarder's part of `voipgw status`: counters from the
// daemon, learned entries read from the kernel.
type dnsStatusValue struct {
	Running bool          `json:"running"`
	Daemon  *dnsPublished `json:"daemon,omitempty"`
	Learned []learnedView `json:"learned"`
}

type learnedView struct {
	Addr      netip.Addr `json:"addr"`
	Ports     string     `json:"ports"`
	Names     []string   `json:"names"`
	ExpiresIn string     `json:"expires_in"`
}

func dnsStatus(r *statusReport) (string, any, []string) {
	if !r.Firewall.Present {
		return "", nil, nil
	}
	if _, ok := r.Firewall.SetSizes[firewall.SetLearned4]; !ok {
		return "", nil, nil // forwarder off in the applied config
	}
	v := dnsStatusValue{Learned: []learnedView{}}
	var problems []string
	if b, err := os.ReadFile(filepath.Join(r.StateDir, dnsStatusFile)); err == nil {
		var p dnsPublished
		if json.Unmarshal(b, &p) == nil {
			v.Daemon = &p
			v.Running = time.Since(p.At) < 30*time.Second
		}
	}
	l, err := firewall.NewLearner(r.Firewall.Table)
	if err == nil {
		defer l.Close()
		var got []firewall.Learned
		if got, err = l.Read(); err == nil {
			for _, x := range got {
				var ps []string
				for _, p := range x.Ports {
					ps = append(ps, p.String())
				}
				v.Learned = append(v.Learned, learnedView{Addr: x.Addr, Ports: strings.Join(ps, ","), Names: x.Names,
					ExpiresIn: x.Timeout.Round(time.Second).String()})
			}
		}
	}
	if err != nil {
		problems = append(problems, "dns: read learned sets: "+err.Error())
	}
	return "dns", v, problems
}

func printDNSStatus(out io.Writer, value any) {
	v, ok := value.(dnsStatusValue)
	if !ok {
		return
	}
	fmt.Fprintf(out, "DNS forwarder\n")
	if !v.Running {
		fmt.Fprintf(out, "  not running: phones' DNS is redirected to the gateway, start `voipgw run`\n")
	} else {
		d := v.Daemon
		fmt.Fprintf(out, "  listen     %v\n", d.Listen)
		fmt.Fprintf(out, "  upstream   %v\n", d.Upstreams)
		s := d.Stats
		fmt.Fprintf(out, "  queries    %d (answered %d, refused %d)\n", s.Queries, s.Answered, s.Refused)
		fmt.Fprintf(out, "  failures   upstream failures %d, replies discarded %d\n", s.UpstreamErrors, s.Discarded)
		fmt.Fprintf(out, "  learning   %d learned, %d refreshed, %d evicted (cap), %d errors\n", s.Learned, s.Refreshed, s.Evicted, s.LearnErrors)
		fmt.Fprintf(out, "  re-resolved %d static names\n", s.Resolved)
	}
	fmt.Fprintf(out, "  learned    %d addresses\n", len(v.Learned))
	if len(v.Learned) == 0 {
		return
	}
	// One line per address (address, time left, names), its ports below it.
	wa, we := 0, 0
	for _, l := range v.Learned {
		wa, we = max(wa, len(l.Addr.String())), max(we, len(l.ExpiresIn))
	}
	for i, l := range v.Learned {
		if i == 20 {
			fmt.Fprintf(out, "    … %d more (voipgw status --json)\n", len(v.Learned)-i)
			return
		}
		fmt.Fprintf(out, "    %-*s  %*s  %s\n", wa, l.Addr, we, l.ExpiresIn, strings.Join(l.Names, " "))
		fmt.Fprintf(out, "      %s\n", strings.ReplaceAll(l.Ports, ",", ", "))
	}
}
