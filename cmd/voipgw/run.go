package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/voipgw/voipgw/config"
)

func init() {
	register("run", command{order: 50, summary: "apply, then stay in the foreground for what the kernel cannot do alone (SIGHUP re-applies)", run: cmdRun})
}

// daemonEnv is what a daemon component gets for one applied config.
type daemonEnv struct {
	Config *config.Config
	Table  string // the nft table voipgw installed
	Ifname string // the VoIP interface
	Log    *slog.Logger
	// StatusDir is where components may publish their counters for `voipgw status`
	// (one JSON file each, written atomically).
	StatusDir string
}

// component is one part of the daemon (RTP keep-alive, DNS forwarder, DHCP, ...).
// Run blocks until ctx is cancelled; a component is restarted with a new env after
// each successful re-apply. A component that returns an error before ctx ends is
// logged and restarted after a back-off.
type component interface {
	Name() string
	Run(ctx context.Context) error
}

// componentFactory makes a component for an applied config; it returns nil when the
// config does not enable that component.
type componentFactory func(env *daemonEnv) (component, error)

// daemonComponents is filled by init() in the files of each feature.
var daemonComponents []componentFactory

// daemonGCPercent is the daemon's GOGC unless the environment sets one. A router has
// little memory and the daemon little garbage: collecting at 40 % heap growth instead
// of 100 % cut RSS by 1-2 MB idle and ~2 MB under 50 phones' traffic at the same CPU
// (BENCHMARKS.md, `scripts/bench daemon`).
const daemonGCPercent = 40

// releaseAfter and releaseEvery: after each (re-)apply, and then every 30 s, the
// daemon collects and hands its free heap back to the kernel at once
// (debug.FreeOSMemory: one forced GC and scavenge, about a millisecond of CPU with
// the daemon's 1-2 MB heap). Its live heap is well under 1 MB, but between
// collections the heap grows to the GC's goal (the 4 MB floor × GOGC) and the
// runtime's background scavenger returns free pages only slowly: without this the
// idle daemon kept ~0.9 MB more anonymous memory, and a single release after the
// apply was regrown within about three minutes (BENCHMARKS.md §4). One second lets
// the components finish starting first.
const (
	releaseAfter = time.Second
	releaseEvery = 30 * time.Second
)

func cmdRun(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	p, err := applyConfig(ctx, o, log)
	if err != nil {
		return err
	}
	log.Info("applied", "config", p.hash, "interface", p.desired.Name, "table", p.table.Name)

	var stop func()
	start := func(p *plan) {
		env := &daemonEnv{Config: p.cfg, Table: p.table.Name, Ifname: p.desired.Name, Log: log, StatusDir: o.stateDir}
		stop = startComponents(ctx, env)
		time.AfterFunc(releaseAfter, debug.FreeOSMemory)
	}
	release := time.NewTicker(releaseEvery)
	defer release.Stop()
	start(p)
	sent, _ := daemon.SdNotify(false, daemon.SdNotifyReady)
	if sent {
		log.Info("notified systemd: ready")
	}
	watchdog := watchdogTicker()
	defer watchdog.Stop()

	for {
		select {
		case <-ctx.Done():
			stop()
			daemon.SdNotify(false, daemon.SdNotifyStopping)
			log.Info("stopping; the table stays installed (voipgw down removes it)")
			return nil
		case <-hup:
			daemon.SdNotify(false, daemon.SdNotifyReloading)
			log.Info("SIGHUP: re-applying", "config", o.config)
			np, err := applyConfig(ctx, o, log)
			if err != nil {
				// The previous table and network stay as they were (apply is atomic).
				log.Error("re-apply failed; keeping the previous state", "err", err)
			} else {
				stop()
				start(np)
				log.Info("re-applied", "config", np.hash)
			}
			daemon.SdNotify(false, daemon.SdNotifyReady)
		case <-watchdog.C:
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		case <-release.C:
			debug.FreeOSMemory()
		}
	}
}

// watchdogTicker ticks at half the systemd watchdog interval, or never.
func watchdogTicker() *time.Ticker {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d == 0 {
		t := time.NewTicker(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTicker(d / 2)
}

// startComponents runs every enabled component in its own goroutine and returns a
// function that stops them all and waits.
func startComponents(parent context.Context, env *daemonEnv) func() {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	for _, f := range daemonComponents {
		c, err := f(env)
		if err != nil {
			env.Log.Error("component not started", "err", err)
			continue
		}
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			superviseComponent(ctx, c, env.Log)
		}()
	}
	return func() { cancel(); wg.Wait() }
}

func superviseComponent(ctx context.Context, c component, log *slog.Logger) {
	backoff := time.Second
	for {
		log.Info("component started", "component", c.Name())
		err := c.Run(ctx)
		if ctx.Err() != nil {
			log.Info("component stopped", "component", c.Name())
			return
		}
		if err == nil {
			err = errors.New("returned early")
		}
		log.Error("component failed; restarting", "component", c.Name(), "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// publishJSON writes a daemon component's status for `voipgw status` atomically
// (temp file + rename). Best effort: status reports a component whose file is
// missing or stale as not running.
func publishJSON(path string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		os.Rename(tmp, path)
	}
}
