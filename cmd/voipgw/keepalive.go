package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/media"
)

// keepaliveStatusFile is where the helper publishes its counters in the state dir.
const keepaliveStatusFile = "keepalive.json"

func init() {
	daemonComponents = append(daemonComponents, newKeepaliveComponent)
	statusProviders = append(statusProviders, keepaliveStatus)
	featurePrinters["keepalive"] = printKeepaliveStatus
}

type keepaliveComponent struct{ env *daemonEnv }

func newKeepaliveComponent(env *daemonEnv) (component, error) {
	k := env.Config.Keepalive
	if !k.Enabled || len(k.Ports) == 0 {
		return nil, nil
	}
	return &keepaliveComponent{env: env}, nil
}

func (c *keepaliveComponent) Name() string { return "keepalive" }

func (c *keepaliveComponent) Run(ctx context.Context) error {
	cfg := c.env.Config
	k := cfg.Keepalive
	filter := media.Filter{Subnets: []netip.Prefix{cfg.Net.IPv4.Masked()}, Ports: k.Ports}
	sets := []string{firewall.SetMediaOut4}
	if cfg.Net.IPv6.IsValid() {
		filter.Subnets = append(filter.Subnets, cfg.Net.IPv6.Masked())
		sets = append(sets, firewall.SetMediaOut6)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := media.Watch(ctx, filter)
	if err != nil {
		return err
	}
	sender, err := media.NewRawSender()
	if err != nil {
		return err
	}
	defer sender.Close()

	path := filepath.Join(c.env.StatusDir, keepaliveStatusFile)
	defer os.Remove(path)
	dirty := make(chan struct{}, 1)
	h := &media.Helper{
		Limits:   media.Limits{Interval: k.Interval, MaxIdle: k.MaxIdle, MaxFlows: k.MaxFlows},
		Events:   events,
		Activity: mediaSets{table: c.env.Table, sets: sets, interval: k.Interval},
		Sender:   sender,
		Log:      c.env.Log,
		Publish: func(media.Stats) {
			select {
			case dirty <- struct{}{}:
			default:
			}
		},
	}
	// The writer coalesces: at most one file write a second, none while nothing changes.
	started := time.Now().UTC()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-dirty:
			}
			publishKeepalive(path, keepalivePublished{PID: os.Getpid(), Started: started, Interval: k.Interval.String(),
				MaxFlows: k.MaxFlows, Stats: h.Stats(), At: time.Now().UTC()})
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	c.env.Log.Info("keepalive helper following media flows", "interval", k.Interval, "max_idle", k.MaxIdle, "max_flows", k.MaxFlows)
	err = h.Run(ctx)
	cancel()
	<-done
	return err
}

// mediaSets reads media_out4/6 of voipgw's table: the flows whose phone sent
// within the interval, with the time left of that.
type mediaSets struct {
	table    string
	sets     []string
	interval time.Duration
}

func (m mediaSets) Active() (map[media.Flow]time.Duration, error) {
	out := map[media.Flow]time.Duration{}
	for _, set := range m.sets {
		elems, err := firewall.SetElements(m.table, set)
		if err != nil {
			return nil, err
		}
		for _, e := range elems {
			if len(e.Key)%2 != 0 {
				continue
			}
			phone, err1 := firewall.ParseEndpoint(e.Key[:len(e.Key)/2])
			remote, err2 := firewall.ParseEndpoint(e.Key[len(e.Key)/2:])
			if err1 != nil || err2 != nil {
				continue
			}
			left := e.Expires
			if left <= 0 || left > m.interval {
				left = m.interval
			}
			out[media.Flow{Phone: phone, Remote: remote}] = left
		}
	}
	return out, nil
}

// keepalivePublished is what the daemon writes for `voipgw status`.
type keepalivePublished struct {
	PID      int         `json:"pid"`
	Started  time.Time   `json:"started"`
	Interval string      `json:"interval"`
	MaxFlows int         `json:"max_flows"`
	Stats    media.Stats `json:"stats"`
	At       time.Time   `json:"at"`
}

func publishKeepalive(path string, p keepalivePublished) { publishJSON(path, p) }

// keepaliveReport is the keep-alive part of `voipgw status`.
type keepaliveReport struct {
	Running bool                `json:"running"`
	Daemon  *keepalivePublished `json:"daemon,omitempty"`
}

func keepaliveStatus(r *statusReport) (string, any, []string) {
	if !r.Firewall.Present {
		return "", nil, nil
	}
	if _, ok := r.Firewall.SetSizes[firewall.SetMediaOut4]; !ok {
		return "", nil, nil // keep-alive off in the applied config
	}
	v := keepaliveReport{}
	if b, err := os.ReadFile(filepath.Join(r.StateDir, keepaliveStatusFile)); err == nil {
		var p keepalivePublished
		if json.Unmarshal(b, &p) == nil {
			v.Daemon = &p
			// The file is written on change only (an idle helper writes nothing), so
			// liveness is the writer's process.
			v.Running = p.PID > 0 && syscall.Kill(p.PID, 0) == nil
		}
	}
	return "keepalive", v, nil
}

func printKeepaliveStatus(out io.Writer, value any) {
	v, ok := value.(keepaliveReport)
	if !ok {
		return
	}
	fmt.Fprintf(out, "RTP keep-alive helper\n")
	if !v.Running || v.Daemon == nil {
		fmt.Fprintf(out, "  not running: silent phones lose their media mapping; start `voipgw run`\n")
		return
	}
	s := v.Daemon.Stats
	fmt.Fprintf(out, "  interval   %s, max_flows %d\n", v.Daemon.Interval, v.Daemon.MaxFlows)
	fmt.Fprintf(out, "  flows      %d tracked (%d started, %d ended)\n", s.Tracked, s.Started, s.Ended)
	fmt.Fprintf(out, "  stopped    %d silent past max_idle, %d not followed (max_flows)\n", s.GaveUp, s.DroppedCap)
	fmt.Fprintf(out, "  keep-alives %d sent (%d send errors, %d activity read errors)\n", s.KeepalivesSent, s.SendErrors, s.ActivityErrors)
}
