package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/vlan"
)

// The kernel guard keeps what voipgw applied in place while other programs on the
// router rewrite the kernel's state:
//
//   - firewall4: `fw4 reload` and `fw4 restart` (service firewall reload/restart,
//     hotplug) only flush or delete `table inet fw4` and leave voipgw's table alone,
//     but `fw4 flush`, which `service firewall stop` runs, deletes every table of
//     every family; so does `nft flush ruleset` at a shell.
//   - netifd: a network reload that re-creates a bridge (br-lan) takes the VLAN
//     interface on it along, and one that re-applies the bridge's VLAN settings or
//     flushes addresses leaves the VoIP interface without them.
//
// The guard listens to nftables (every committed ruleset generation) and to link and
// address changes, and after each it checks, under the state lock, that the table and the
// VoIP interface (up, with voipgw's addresses) are still there. If not, it asks the
// daemon for a re-apply by SIGHUP, exactly what `/etc/init.d/voipgw reload` and
// `systemctl reload voipgw` do, so the one reconciler repairs everything in one go.
// Under the lock so that `voipgw down` (which removes the record last, holding the
// lock) is never undone: no record, nothing to keep.

func init() {
	daemonComponents = append(daemonComponents, func(env *daemonEnv) (component, error) {
		return &kernelGuard{env: env, reapply: sighupSelf, backoff: &sharedGuardBackoff}, nil
	})
}

func sighupSelf() error { return syscall.Kill(os.Getpid(), syscall.SIGHUP) }

type kernelGuard struct {
	env     *daemonEnv
	reapply func() error
	backoff *guardBackoff
}

func (g *kernelGuard) Name() string { return "kernel-guard" }

// guardBackoff spaces out re-applies while the kernel keeps disagreeing (a parent
// device that is gone for good, a re-apply that fails): the first repair is
// immediate, the next ones wait 1 s, 2 s, ... 1 min. It outlives one guard, since
// each successful re-apply restarts the daemon's components.
type guardBackoff struct {
	mu    sync.Mutex
	last  time.Time
	delay time.Duration
}

var sharedGuardBackoff guardBackoff

const (
	guardMinDelay = time.Second
	guardMaxDelay = time.Minute
)

// next reports how long to wait before the next re-apply may be asked for (0: now),
// and records the request when it is now.
func (b *guardBackoff) next(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		if wait := b.last.Add(b.delay).Sub(now); wait > 0 {
			return wait
		}
	}
	b.last = now
	if b.delay == 0 {
		b.delay = guardMinDelay
	} else {
		b.delay = min(b.delay*2, guardMaxDelay)
	}
	return 0
}

// reset is called when the kernel agrees again.
func (b *guardBackoff) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.delay = time.Time{}, 0
}

func (g *kernelGuard) Run(ctx context.Context) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables netlink: %w", err)
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64)) // all objects: NEWGEN ends each batch
	gens, err := conn.AddGenerationalMonitor(mon)
	if err != nil {
		return fmt.Errorf("watch nftables: %w", err)
	}
	defer func() {
		mon.Close()
		for range gens { // let the monitor's goroutine finish
		}
	}()

	// Links (deleted, re-created, set down) and addresses (flushed by a netifd reload):
	// two rtnetlink groups, two subscriptions.
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	linkErr := make(chan error, 1)
	onErr := func(err error) {
		select {
		case linkErr <- err:
		default:
		}
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(done)
		return fmt.Errorf("watch links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(done)
		for range links {
		}
		return fmt.Errorf("watch addresses: %w", err)
	}
	defer func() {
		close(done)
		for range links {
		}
		for range addrs {
		}
	}()

	// Changes between the apply and the subscriptions above are covered by this first look.
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-gens:
			if !ok {
				return errors.New("nftables monitor closed")
			}
			if ev.GeneratedBy != nil && ev.GeneratedBy.Error != nil {
				// ENOBUFS and the like: events were lost; the supervisor restarts the guard,
				// whose first check covers them.
				return fmt.Errorf("nftables monitor: %w", ev.GeneratedBy.Error)
			}
		case _, ok := <-links:
			if !ok {
				return errors.New("link monitor closed")
			}
		case _, ok := <-addrs:
			if !ok {
				return errors.New("address monitor closed")
			}
		case err := <-linkErr:
			return fmt.Errorf("link monitor: %w", err)
		case <-retry.C:
		}
		reason, err := g.missing()
		if err != nil {
			g.env.Log.Warn("kernel guard: cannot check the applied state", "err", err)
			continue
		}
		if reason == "" {
			g.backoff.reset()
			continue
		}
		if wait := g.backoff.next(time.Now()); wait > 0 {
			retry.Reset(wait)
			continue
		}
		g.env.Log.Warn("restoring: "+reason, "table", "inet "+g.env.Table, "interface", g.env.Ifname)
		if err := g.reapply(); err != nil {
			return fmt.Errorf("ask for a re-apply: %w", err)
		}
	}
}

// missing says what of the applied state the kernel no longer has, or "" when all is
// there or nothing is to be kept (no record: never applied, or `voipgw down` ran).
func (g *kernelGuard) missing() (string, error) {
	unlock, err := lockState(g.env.StatusDir)
	if err != nil {
		return "", err
	}
	defer unlock()
	rec, err := loadRecord(g.env.StatusDir)
	if err != nil || rec == nil {
		return "", err
	}
	present, err := firewall.TablePresent(rec.Table)
	if err != nil {
		return "", err
	}
	if !present {
		return fmt.Sprintf("table inet %s was deleted (fw4 flush, service firewall stop or nft flush ruleset)", rec.Table), nil
	}
	if rec.VLAN.Name == "" {
		return "", nil
	}
	ls, err := vlan.Read(rec.VLAN.Name)
	if err != nil {
		return "", err
	}
	switch {
	case !ls.Exists:
		return fmt.Sprintf("VoIP interface %s is gone (its parent re-created by a network reload?)", rec.VLAN.Name), nil
	case !ls.Up:
		return fmt.Sprintf("VoIP interface %s is down", rec.VLAN.Name), nil
	}
	for _, a := range rec.VLAN.AddedAddrs {
		if !slices.Contains(ls.Addrs, a) {
			return fmt.Sprintf("VoIP interface %s lost its address %s", rec.VLAN.Name, a), nil
		}
	}
	return "", nil
}
