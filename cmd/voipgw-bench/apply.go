package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/voipgw/voipgw/lab"
)

var (
	applyRounds = flag.Int("apply-rounds", 21, "apply: rounds of the 1 000-entry comparisons (each runs every variant once)")
	applyBigN   = flag.Int("apply-big", 100000, "apply: entries of the large config (0: skip it)")
	applyBigRds = flag.Int("apply-big-rounds", 5, "apply: rounds of the large config")
	// -baseline (forward.go) names the old binary; apply measures it in the same rounds too.
)

// The example config (openwrt/voipgw.config) on the lab's devices: its profiles
// without host names (yealink's are names: they would make apply resolve), its scan
// section, n literal allowlist entries and extra (one more allow section).
func applyConfig(n int, extra string) string {
	sec, _ := entries(n)
	return lab.Config(noNameProfiles + `
config profile
	option name 'webex'
	option enabled '0'

config scan 'scan'
	option enabled '1'
	option threshold '10'
	option window '3'
	option timeout '3600'
` + sec + extra)
}

// oneEntry is an allow section with one literal entry; the "one entry changed"
// rounds alternate two of them (203.0.113.11 is odd: no entry of entries() has it).
func oneEntry(port int) string {
	return fmt.Sprintf("\nconfig allow\n\toption name 'one'\n\tlist dest '203.0.113.11'\n\tlist port 'udp/%d'\n", port)
}

// runResult is one process run: wall time and peak RSS (the kernel's ru_maxrss).
type runResult struct {
	ms      float64
	maxRSSK float64
	steps   map[string]float64 // voipgw apply's "apply done" log line: ms per step
}

// applyStep finds the durations in voipgw apply's last log line ("apply done").
var applyStep = regexp.MustCompile(`\b(took|plan|network|table|sip_alg|record|release)=([0-9.]+)ms`)

// stepsOf reads the durations of apply's steps from its output (nil without the line:
// a binary from before it was logged).
func stepsOf(out []byte) map[string]float64 {
	i := bytes.LastIndex(out, []byte(`msg="apply done"`))
	if i < 0 {
		return nil
	}
	line, _, _ := bytes.Cut(out[i:], []byte("\n"))
	steps := map[string]float64{}
	for _, m := range applyStep.FindAllSubmatch(line, -1) {
		if v, err := strconv.ParseFloat(string(m[2]), 64); err == nil {
			steps[string(m[1])] = v
		}
	}
	return steps
}

// run runs a command in the gateway namespace and measures it. Peak RSS comes from
// GNU time run in between: Linux carries a process's RSS high-water mark across
// exec, so a child forked from this (large) process would report at least this
// process's RSS; time's own child starts small. Its few hundred microseconds are
// in every variant's wall time alike.
func (e *env) run(name string, args ...string) (runResult, error) {
	var r runResult
	rssFile := filepath.Join(e.dir, "maxrss")
	err := e.l.GW.Do(func() error {
		cmd := exec.Command(name, args...)
		if timeBin != "" {
			cmd = exec.Command(timeBin, append([]string{"-f", "%M", "-o", rssFile, name}, args...)...)
		}
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		r.ms = float64(time.Since(t0).Microseconds()) / 1000
		if err != nil {
			return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		r.steps = stepsOf(out)
		if timeBin != "" {
			b, err := os.ReadFile(rssFile)
			if err != nil {
				return err
			}
			kb, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err != nil {
				return fmt.Errorf("%s: %q: %w", timeBin, b, err)
			}
			r.maxRSSK = kb
		} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.maxRSSK = float64(ru.Maxrss) // a floor of this process's RSS (see above)
		}
		return nil
	})
	return r, err
}

// timeBin is GNU time, if installed (for peak RSS; see run).
var timeBin = func() string {
	if p, err := exec.LookPath("/usr/bin/time"); err == nil {
		return p
	}
	return ""
}()

// applyVariant is one command measured in the rounds.
type applyVariant struct {
	name   string
	cmd    func(cfg string) (string, []string) // program and arguments for the round's config
	t, rss series
	steps  map[string][]float64 // apply's own account of its steps (ms), per run
}

func benchApply(e *env) error {
	bins := []struct{ name, path string }{{"voipgw apply", *voipgwBin}}
	if *baselineBin != "" {
		abs, err := filepath.Abs(*baselineBin)
		if err != nil {
			return err
		}
		bins = append(bins, struct{ name, path string }{"baseline apply", abs})
	}
	// Each binary keeps its own state dir: apply records what it set up.
	applyOf := func(path string) func(string) (string, []string) {
		return func(cfg string) (string, []string) {
			return path, []string{"apply", "--config", cfg, "--state-dir", cfg + "." + filepath.Base(filepath.Dir(path)) + ".state"}
		}
	}
	variants := func(nftFiles map[string]string) []*applyVariant {
		var vs []*applyVariant
		for _, b := range bins {
			vs = append(vs, &applyVariant{name: b.name, cmd: applyOf(b.path)})
		}
		// nft -f replaces the table as the old apply did: create (if absent), delete, load, in one file.
		vs = append(vs, &applyVariant{name: "nft -f rendered table", cmd: func(cfg string) (string, []string) { return "nft", []string{"-f", nftFiles[cfg]} }})
		return vs
	}
	prepare := func(name, content string, nftFiles map[string]string) (string, error) {
		cfg, err := e.write(name, content)
		if err != nil {
			return "", err
		}
		rendered, err := e.voipgw(cfg, "render", "--no-resolve")
		if err != nil {
			return "", err
		}
		f, err := e.write(name+".nft", "table inet voipgw\ndelete table inet voipgw\n"+rendered)
		nftFiles[cfg] = f
		return cfg, err
	}
	// measure runs every variant once per round (order rotated), on cfgs[r % len(cfgs)].
	// Unless fresh (the table deleted before each run), the measured program first
	// brings the table to the previous config of the sequence itself (for one
	// config: the same one), so what is measured is one step from its own state
	// (the other programs' tables differ in their rules' user data).
	measure := func(title string, rounds int, cfgs []string, vs []*applyVariant, fresh bool) error {
		fmt.Printf("\napply: %s, %d rounds, alternating\n", title, rounds)
		for r := range rounds {
			for k := range vs {
				v := vs[(r+k)%len(vs)]
				cfg := cfgs[r%len(cfgs)]
				if fresh {
					if _, err := e.l.GW.Run("sh", "-c", "nft delete table inet voipgw 2>/dev/null || true"); err != nil {
						return err
					}
				} else {
					p, a := v.cmd(cfgs[(r+1)%len(cfgs)])
					if _, err := e.run(p, a...); err != nil {
						return err
					}
				}
				p, a := v.cmd(cfg)
				res, err := e.run(p, a...)
				if err != nil {
					return err
				}
				v.t.v = append(v.t.v, res.ms)
				v.rss.v = append(v.rss.v, res.maxRSSK/1024)
				for k, d := range res.steps {
					if v.steps == nil {
						v.steps = map[string][]float64{}
					}
					v.steps[k] = append(v.steps[k], d)
				}
			}
		}
		for _, v := range vs {
			v.t.name, v.t.unit = v.name, "ms"
			fmt.Println(v.t.summary())
		}
		for _, v := range vs {
			v.rss.name, v.rss.unit = v.name+" peak RSS", "MB"
			fmt.Println(v.rss.summary())
		}
		// Inside the process (its log): the rest of the wall time is the runtime's
		// start and exit and ip netns exec.
		for _, v := range vs {
			if len(v.steps) == 0 {
				continue
			}
			fmt.Printf("%s, its steps (medians, ms):", v.name)
			for _, k := range []string{"took", "plan", "network", "table", "sip_alg", "record", "release"} {
				fmt.Printf(" %s %.2f", k, median(v.steps[k]))
			}
			fmt.Println()
		}
		nft := vs[len(vs)-1]
		for _, v := range vs[:len(vs)-1] {
			fmt.Println(ratioLine(v.name+" / nft -f", &v.t, &nft.t, "<=", 0.5))
		}
		if len(bins) == 2 {
			fmt.Println(ratioLine("voipgw / baseline apply", &vs[0].t, &vs[1].t, "", 0))
		}
		return nil
	}

	if timeBin == "" {
		fmt.Println("note: /usr/bin/time is not installed: peak RSS below is at least this bench's own RSS")
	}
	const n = 1000
	nftFiles := map[string]string{}
	cfgA, err := prepare("apply-a", applyConfig(n, oneEntry(30001)), nftFiles)
	if err != nil {
		return err
	}
	cfgB, err := prepare("apply-b", applyConfig(n, oneEntry(30003)), nftFiles)
	if err != nil {
		return err
	}
	for _, b := range bins { // interface, sysctls: the rounds re-apply
		p, a := applyOf(b.path)(cfgA)
		if _, err := e.run(p, a...); err != nil {
			return fmt.Errorf("first apply: %w", err)
		}
	}
	if n, err := e.setElements("voipgw", "allow4"); err == nil {
		fmt.Printf("setup: %d elements in allow4\n", n)
	}
	if err := gpProbe(e); err != nil {
		return err
	}
	render := series{name: "voipgw render (no kernel)", unit: "ms"}
	for range 5 {
		res, err := e.run(*voipgwBin, "render", "--no-resolve", "--config", cfgA)
		if err != nil {
			return err
		}
		render.v = append(render.v, res.ms)
	}
	fmt.Println(render.summary())
	if err := measure(fmt.Sprintf("re-apply of an unchanged config, %d entries", n), *applyRounds, []string{cfgA}, variants(nftFiles), false); err != nil {
		return err
	}
	// The floor of a changed apply by any program that uses nftables: nft loading
	// only the change (the one element deleted and the other added, one commit),
	// from a file written beforehand — no config, no diff, no rule replaced. It
	// deletes, so it waits out the kernel's grace period as every changed apply does.
	deltas := map[string]string{}
	for _, d := range []struct{ cfg, from, to string }{{cfgA, "30003", "30001"}, {cfgB, "30001", "30003"}} {
		// The leading add (of an element that is there: no change) lets the file
		// run from either state, as the rounds' preparing step needs.
		el := "inet voipgw allow4 { 203.0.113.11 . udp . %s }\n"
		f, err := e.write(filepath.Base(d.cfg)+".delta.nft", fmt.Sprintf("add element "+el+"delete element "+el+"add element "+el, d.from, d.from, d.to))
		if err != nil {
			return err
		}
		deltas[d.cfg] = f
	}
	changed := variants(nftFiles)
	changed = append(changed[:len(changed)-1], &applyVariant{name: "floor: nft -f of the change alone",
		cmd: func(cfg string) (string, []string) { return "nft", []string{"-f", deltas[cfg]} }},
		// What the voipgw binary costs before and after any work: exec, the Go
		// runtime's start and the exit, measured the same way.
		&applyVariant{name: "floor: voipgw version", cmd: func(string) (string, []string) { return *voipgwBin, []string{"version"} }},
		changed[len(changed)-1])
	if err := measure(fmt.Sprintf("apply with one entry changed (of %d; configs alternate)", n), *applyRounds, []string{cfgA, cfgB}, changed, false); err != nil {
		return err
	}
	if *applyBigN <= 0 {
		return nil
	}

	bigA, err := prepare("big-a", applyConfig(*applyBigN, oneEntry(30001)), nftFiles)
	if err != nil {
		return err
	}
	bigB, err := prepare("big-b", applyConfig(*applyBigN, oneEntry(30003)), nftFiles)
	if err != nil {
		return err
	}
	title := fmt.Sprintf("%d entries", *applyBigN)
	if err := measure("first apply (no table), "+title, *applyBigRds, []string{bigA}, variants(nftFiles), true); err != nil {
		return err
	}
	if n, err := e.setElements("voipgw", "allow4"); err == nil {
		fmt.Printf("check: %d elements in allow4\n", n)
	}
	if err := measure("re-apply unchanged, "+title, *applyBigRds, []string{bigA}, variants(nftFiles), false); err != nil {
		return err
	}
	return measure("one entry changed, "+title, *applyBigRds, []string{bigA, bigB}, variants(nftFiles), false)
}
