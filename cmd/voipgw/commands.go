package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/nfhold"
	"github.com/voipgw/voipgw/resolver"
	"github.com/voipgw/voipgw/vlan"
)

// plan is everything apply needs, computed without touching the system.
type plan struct {
	cfg        *config.Config
	hash       string
	table      *firewall.Table
	desired    vlan.Desired
	unresolved []firewall.Unresolved
}

func loadConfig(path string, log *slog.Logger) (*config.Config, error) {
	cfg, warnings, err := config.Load(path)
	for _, w := range warnings {
		log.Warn("config: " + w.String())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func makePlan(ctx context.Context, o *options, log *slog.Logger, resolve bool) (*plan, error) {
	cfg, err := loadConfig(o.config, log)
	if err != nil {
		return nil, err
	}
	p := &plan{cfg: cfg, hash: cfg.Hash()}
	resolved := map[string][]netip.Addr{}
	if names := firewall.HostNames(cfg); resolve && len(names) > 0 {
		r := &resolver.Resolver{Upstreams: cfg.DNS.Upstream}
		if len(r.Upstreams) == 0 {
			if r.Upstreams, err = resolver.SystemUpstreams("/etc/resolv.conf"); err != nil {
				return nil, fmt.Errorf("resolve the allowlist's host names: %w (set list upstream in a dns section)", err)
			}
		}
		log.Info("resolving allowlist host names", "names", len(names), "upstream", fmt.Sprint(r.Upstreams))
		start := time.Now()
		results := r.LookupAll(ctx, names, func(done, total int) {
			if done%20 == 0 && done < total {
				log.Info("resolving", "done", done, "of", total)
			}
		})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		ok := 0
		for name, res := range results {
			if res.Err == nil {
				resolved[name] = res.Addrs
				ok++
			}
		}
		log.Info("resolved", "names", ok, "of", len(names), "took", time.Since(start).Round(time.Millisecond))
	}
	spec, missing := firewall.SpecFromConfig(cfg, resolved, p.hash)
	spec.NAT.WANAddr = wanAddrForNAT(cfg, log) // nat.go
	p.unresolved = missing
	if p.table, err = firewall.Build(spec); err != nil {
		return nil, err
	}
	p.desired = networkDesired(cfg) // validate.go
	if err := p.desired.Validate(); err != nil {
		return nil, fmt.Errorf("%s: voipgw.%s: %w", o.config, cfg.Net.Section, err)
	}
	return p, nil
}

func cmdRender(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	p, err := makePlan(ctx, o, log, !o.noResolve)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "# voipgw %s, config %s (hash %s)\n", version, o.config, p.hash)
	fmt.Fprintf(out, "# profiles: %s\n", strings.Join(p.cfg.Profiles, ", "))
	for _, u := range p.unresolved {
		fmt.Fprintf(out, "# not in the table: %s %s (%s)\n", u.Source, u.Dest, u.Reason)
	}
	_, err = io.WriteString(out, p.table.Loadable()) // nft -f input
	return err
}

// lockState serialises voipgw runs that change the system (hotplug, reload and an
// admin at the shell can overlap).
func lockState(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// applyGCPercent and applyMemoryLimit are apply's GOGC and GOMEMLIMIT unless the
// environment sets them: no collection until the Go heap nears 16 MiB. A large
// allowlist is built in memory once, and the soft limit keeps its peak in bounds
// (100 000 entries: 21 MB peak RSS, as with GOGC=50 and the same limit; 12 MiB
// thrashed once, 3.3 s); a config of the usual size never reaches it, so its
// apply does no garbage collection at all (1 000 entries: the steps apply logs
// took 12.8 -> 10.1 ms unchanged and 21.7 -> 19.1 ms changed, medians of 21
// runs side by side; BENCHMARKS.md §3). The daemon applies under its own setting.
const (
	applyGCPercent   = -1 // off: only the memory limit starts a collection
	applyMemoryLimit = 16 << 20
)

func cmdApply(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(applyGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(applyMemoryLimit)
	}
	p, err := applyConfig(ctx, o, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "applied config %s: interface %s, table inet %s\n", p.hash, p.desired.Name, p.table.Name)
	return nil
}

// applyConfig is apply without the output: the daemon calls it at start and on SIGHUP.
func applyConfig(ctx context.Context, o *options, log *slog.Logger) (_ *plan, err error) {
	// How long each step took, logged when the run is done: what an apply costs on
	// the router (and what dominates it: BENCHMARKS.md §3) without a profiler.
	var tm applyTiming
	t0 := time.Now()
	step := func(d *time.Duration) { now := time.Now(); *d = now.Sub(t0); t0 = now }
	start := t0
	defer func() {
		if err == nil {
			step(&tm.release)
			log.Info("apply done", "took", ms(time.Since(start)), "plan", ms(tm.plan), "network", ms(tm.network),
				"table", ms(tm.table), "sip_alg", ms(tm.sip), "record", ms(tm.record), "release", ms(tm.release))
		}
	}()
	p, err := makePlan(ctx, o, log, true)
	if err != nil {
		return nil, err
	}
	for _, u := range p.unresolved {
		log.Warn("allowlist entry not in the table", "source", u.Source, "dest", u.Dest, "reason", u.Reason)
	}
	unlock, err := lockState(o.stateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, err := loadRecord(o.stateDir)
	if err != nil {
		return nil, err
	}
	// Apply gets the whole previous record even when the interface name, VID or parent
	// changed: it gives back what is no longer wanted itself and keeps the original
	// values of sysctls both interfaces need (a separate Remove would switch them off).
	var prevVLAN vlan.State
	if prev != nil {
		prevVLAN = prev.VLAN
	}

	step(&tm.plan) // config, names resolved, table built, state lock and record read
	vst, changes, undo, err := vlan.Apply(ctx, p.desired, prevVLAN)
	if err != nil {
		return nil, fmt.Errorf("VoIP network %s: %w (nothing changed)", p.desired.Name, err)
	}
	step(&tm.network)
	for _, c := range changes {
		log.Info("network: " + c)
	}
	// The netfilter netlink sockets of this run are closed when it is done: a commit
	// that deleted anything makes the first close wait for an RCU grace period
	// (10-15 ms; package nfhold), which so passes while the SIP ALG check and the
	// record are done (released when this returns, before the unlock).
	hold := &nfhold.Holder{}
	defer hold.Release()
	ctx = nfhold.With(ctx, hold)
	fwChanges, err := firewall.UpdateHolding(p.table, hold)
	if err != nil {
		if uerr := undo(); uerr != nil {
			return nil, fmt.Errorf("%w; undoing the network changes also failed: %v", err, uerr)
		}
		return nil, fmt.Errorf("%w; the network changes of this run were undone", err)
	}
	log.Info("table installed", "table", "inet "+p.table.Name, "config", p.hash, "changes", fwChanges.String())
	step(&tm.table)

	// What the previous apply made under other names is no longer wanted.
	if prev != nil && prev.Table != "" && prev.Table != p.table.Name {
		if _, err := firewall.Delete(prev.Table); err != nil {
			log.Warn("could not remove the previous table", "table", prev.Table, "err", err)
		}
	}
	sipState, sipErr := applySIP(ctx, p, prev, log) // sip.go: SIP ALG off outside voipgw's table
	step(&tm.sip)
	rec := &record{Table: p.table.Name, ConfigHash: p.hash, ConfigPath: o.config, AppliedAt: time.Now().UTC(), VLAN: vst, SIP: sipState}
	if err := saveRecord(o.stateDir, rec); err != nil {
		return nil, err
	}
	step(&tm.record)
	if sipErr != nil {
		return nil, sipErr
	}
	return p, nil
}

// applyTiming is the duration of each step of one apply; release is the close of
// its netfilter sockets, which waits out the kernel's grace period after a commit
// that deleted anything (package nfhold).
type applyTiming struct{ plan, network, table, sip, record, release time.Duration }

// ms formats d in milliseconds with two decimals, for the log.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64) + "ms"
}

func cmdDown(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	unlock, err := lockState(o.stateDir)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := loadRecord(o.stateDir)
	if err != nil {
		return err
	}
	table := ""
	var vst vlan.State
	if rec != nil {
		table, vst = rec.Table, rec.VLAN
	} else {
		// No record (e.g. it was lost): remove only what carries voipgw's marks.
		cfg, err := loadConfig(o.config, log)
		if err != nil {
			return fmt.Errorf("no record of an apply in %s, and the config cannot say what to remove: %w", o.stateDir, err)
		}
		table = cfg.Table
		st, err := firewall.ReadStatus(table)
		if err == nil && st.Present && st.ConfigHash == "" {
			return fmt.Errorf("table inet %s exists but was not made by voipgw; not removing it", table)
		}
		vst = stateFromKernel(cfg.Net.Ifname)
	}
	if err := downSIP(ctx, o, rec, log); err != nil { // sip.go: restore what apply changed outside the table
		return err
	}
	removed, err := firewall.Delete(table)
	if err != nil {
		return err
	}
	if removed {
		log.Info("removed table", "table", "inet "+table)
	}
	changes, err := vlan.Remove(ctx, vst)
	for _, c := range changes {
		log.Info("network: " + c)
	}
	if err != nil {
		return fmt.Errorf("remove VoIP network: %w", err)
	}
	if err := removeRecord(o.stateDir); err != nil {
		return err
	}
	fmt.Fprintf(out, "voipgw is down: table inet %s removed, %d network changes undone\n", table, len(changes))
	return nil
}

// statusReport is what `voipgw status` prints; every field is read from the kernel
// except those marked as coming from the record or the config file.
type statusReport struct {
	Interface     vlan.Status     `json:"interface"`
	Firewall      firewall.Status `json:"firewall"`
	Scanners      []string        `json:"scanners"`
	RecordedHash  string          `json:"recorded_config_hash,omitempty"` // from the state record
	ConfigHash    string          `json:"config_file_hash,omitempty"`     // of the config file now
	AppliedAt     *time.Time      `json:"applied_at,omitempty"`
	Problems      []string        `json:"problems"`
	Features      map[string]any  `json:"features,omitempty"` // filled by statusProviders
	ConfigPath    string          `json:"config_path"`
	StateRecorded bool            `json:"state_recorded"`

	// StateDir is where daemon components publish their status (for statusProviders).
	StateDir string `json:"-"`
}

func cmdStatus(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	rep := collectStatus(o)
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(out, &rep)
	if len(rep.Problems) > 0 {
		return fmt.Errorf("%d problem(s)", len(rep.Problems))
	}
	return nil
}

// collectStatus reads everything `voipgw status` and `voipgw metrics` show.
func collectStatus(o *options) statusReport {
	rep := statusReport{ConfigPath: o.config, Problems: []string{}, Scanners: []string{}, StateDir: o.stateDir}
	rec, err := loadRecord(o.stateDir)
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	}
	table, ifname := config.DefaultTable, ""
	if cfg, _, err := config.Load(o.config); err == nil {
		table, ifname = cfg.Table, cfg.Net.Ifname
		rep.ConfigHash = cfg.Hash()
	} else if !errors.Is(err, os.ErrNotExist) {
		rep.Problems = append(rep.Problems, "config: "+err.Error())
	}
	if rec != nil {
		rep.StateRecorded = true
		table, ifname = rec.Table, rec.VLAN.Name
		rep.RecordedHash = rec.ConfigHash
		t := rec.AppliedAt
		rep.AppliedAt = &t
	}
	if ifname != "" {
		if rep.Interface, err = vlan.Read(ifname); err != nil {
			rep.Problems = append(rep.Problems, "interface: "+err.Error())
		}
		if !rep.Interface.Exists {
			rep.Problems = append(rep.Problems, fmt.Sprintf("VoIP interface %s does not exist", ifname))
		} else if !rep.Interface.Up {
			rep.Problems = append(rep.Problems, fmt.Sprintf("VoIP interface %s is down", ifname))
		}
	}
	if rep.Firewall, err = firewall.ReadStatus(table); err != nil {
		rep.Problems = append(rep.Problems, "firewall: "+err.Error())
	}
	if !rep.Firewall.Present {
		rep.Problems = append(rep.Problems, fmt.Sprintf("table inet %s is not installed: phones are not restricted", table))
	} else {
		if rep.ConfigHash != "" && rep.Firewall.ConfigHash != rep.ConfigHash {
			rep.Problems = append(rep.Problems, fmt.Sprintf("the kernel has config %s but %s is now %s: run voipgw apply", rep.Firewall.ConfigHash, o.config, rep.ConfigHash))
		}
		for _, set := range []string{firewall.SetScanners4, firewall.SetScanners6} {
			elems, err := firewall.SetElements(table, set)
			if err != nil {
				continue
			}
			for _, e := range elems {
				if a, ok := netip.AddrFromSlice(e.Key); ok {
					rep.Scanners = append(rep.Scanners, fmt.Sprintf("%s (expires in %s)", a, e.Expires.Round(time.Second)))
				}
			}
		}
	}
	for _, sp := range statusProviders {
		name, v, problems := sp(&rep)
		if v != nil {
			if rep.Features == nil {
				rep.Features = map[string]any{}
			}
			rep.Features[name] = v
		}
		rep.Problems = append(rep.Problems, problems...)
	}
	return rep
}

// statusProvider adds one feature's state (read from the kernel or the daemon's
// published status) to `voipgw status`: its JSON value, printed lines come from
// printFeature, and problems. Features register providers in init().
type statusProvider func(r *statusReport) (name string, value any, problems []string)

var statusProviders []statusProvider

// featurePrinters print a feature's value in the human-readable status.
var featurePrinters = map[string]func(out io.Writer, value any){}

// statusWidth is the terminal width `voipgw status` keeps to.
const statusWidth = 80

func printStatus(out io.Writer, r *statusReport) {
	var b strings.Builder
	printStatusLines(&b, r)
	io.WriteString(out, foldLines(b.String(), statusWidth))
}

// statusHeadline is the first line: the verdict and the numbers an admin looks for.
func statusHeadline(r *statusReport) string {
	verdict := "OK"
	if n := len(r.Problems); n > 0 {
		verdict = fmt.Sprintf("%d PROBLEM(S), listed at the end", n)
	}
	var parts []string
	if phones, ok := r.Features["dhcp"].([]phoneView); ok {
		parts = append(parts, fmt.Sprintf("phones %d", len(phones)))
	}
	if n, ok := r.Features["nat"].(natReport); ok {
		parts = append(parts, fmt.Sprintf("mappings %d", len(n.Kernel.Mappings)))
	}
	if d, ok := r.Features["dns"].(dnsStatusValue); ok {
		parts = append(parts, fmt.Sprintf("learned %d", len(d.Learned)))
	}
	if r.Firewall.Present {
		parts = append(parts, fmt.Sprintf("scanners %d", len(r.Scanners)))
	}
	if len(parts) == 0 {
		return "voipgw: " + verdict
	}
	return fmt.Sprintf("voipgw: %s (%s)", verdict, strings.Join(parts, ", "))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func printStatusLines(out io.Writer, r *statusReport) {
	fmt.Fprintf(out, "%s\n", statusHeadline(r))
	i := r.Interface
	fmt.Fprintf(out, "VoIP network\n")
	if i.Exists {
		up := "DOWN"
		if i.Up {
			up = "up"
		}
		kind := i.Kind
		if i.VID != 0 {
			kind = fmt.Sprintf("%s vid %d on %s", i.Kind, i.VID, i.Parent)
		}
		var addrs []string
		for _, a := range i.Addrs {
			addrs = append(addrs, a.String())
		}
		fmt.Fprintf(out, "  interface  %s (%s) %s, oper %s\n", i.Name, kind, up, i.OperState)
		fmt.Fprintf(out, "  addresses  %s\n", strings.Join(addrs, " "))
		fmt.Fprintf(out, "  forwarding ipv4 %s, ipv6 %s\n", onOff(i.Forwarding4), onOff(i.Forwarding6))
	} else {
		fmt.Fprintf(out, "  interface  %s: absent\n", i.Name)
	}
	f := r.Firewall
	fmt.Fprintf(out, "Firewall\n")
	if !f.Present {
		fmt.Fprintf(out, "  table inet %s: absent\n", f.Table)
	} else {
		fmt.Fprintf(out, "  table inet %s: %d chains, %d rules, config %s\n", f.Table, f.Chains, f.Rules, f.ConfigHash)
		if len(f.Undecoded) > 0 {
			fmt.Fprintf(out, "             (not counted, undecodable via netlink: rules of %s)\n", strings.Join(f.Undecoded, ", "))
		}
		if r.AppliedAt != nil {
			fmt.Fprintf(out, "  applied    %s\n", r.AppliedAt.Local().Format(time.RFC3339))
		}
		allow := f.SetSizes[firewall.SetAllow4] + f.SetSizes[firewall.SetAllow4Range] + f.SetSizes[firewall.SetAllow6] + f.SetSizes[firewall.SetAllow6Range]
		fmt.Fprintf(out, "  allowlist  %d elements\n", allow)
		fmt.Fprintf(out, "  %-25s %12s %14s\n", "counter", "packets", "bytes")
		for _, name := range firewall.Counters {
			c := f.Counters[name]
			fmt.Fprintf(out, "  %-25s %12d %14d\n", name, c.Packets, c.Bytes)
		}
		fmt.Fprintf(out, "  scanners   %d\n", len(r.Scanners))
		for _, s := range r.Scanners {
			fmt.Fprintf(out, "    %s\n", s)
		}
	}
	names := make([]string, 0, len(r.Features))
	for name := range r.Features {
		names = append(names, name)
	}
	slices.Sort(names) // a stable order, whatever the map's
	for _, name := range names {
		if p, ok := featurePrinters[name]; ok {
			p(out, r.Features[name])
		}
	}
	if len(r.Problems) == 0 {
		fmt.Fprintf(out, "OK\n")
		return
	}
	slices.Sort(r.Problems)
	for _, p := range r.Problems {
		fmt.Fprintf(out, "PROBLEM: %s\n", p)
	}
}

// foldLines breaks lines longer than width: after ": " when that keeps at least
// half the line, else after the last space or comma that fits. Continuation
// lines are indented to the value column (13) of "  name       value" lines, or
// four more than the line itself.
func foldLines(s string, width int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		nl := strings.HasSuffix(line, "\n")
		line = strings.TrimSuffix(line, "\n")
		indent := len(line) - len(strings.TrimLeft(line, " "))
		cont := strings.Repeat(" ", indent+4)
		if indent == 2 && len(line) > 13 && line[12] == ' ' && line[13] != ' ' {
			cont = strings.Repeat(" ", 13)
		}
		for utf8.RuneCountInString(line) > width {
			cut := foldPoint(line, width)
			if cut <= len(cont) {
				break // one word longer than the line: leave it
			}
			b.WriteString(strings.TrimRight(line[:cut], " "))
			b.WriteString("\n")
			line = cont + strings.TrimLeft(line[cut:], " ")
		}
		b.WriteString(line)
		if nl {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// foldPoint is the byte offset to break line at so that the first part fits in
// width columns; -1 if there is none.
func foldPoint(line string, width int) int {
	limit, n := len(line), 0
	for i := range line {
		if n == width {
			limit = i
			break
		}
		n++
	}
	best, colon := -1, -1
	for i := 1; i < limit; i++ {
		switch {
		case line[i] == ' ' && line[i-1] == ':':
			best, colon = i, i
		case line[i] == ' ' || line[i-1] == ',':
			best = i
		}
	}
	if colon >= width/2 {
		return colon
	}
	return best
}

// stateFromKernel is what down can safely remove without a record: a VLAN link that
// carries voipgw's alias. Addresses on a dedicated port cannot be told apart from the
// admin's own without the record, so they are left alone.
func stateFromKernel(ifname string) vlan.State {
	st, err := vlan.Read(ifname)
	if err != nil || !st.Exists || !st.OwnedByVoipgw {
		return vlan.State{}
	}
	return vlan.State{Name: st.Name, Parent: st.Parent, VID: st.VID, CreatedLink: true}
}
