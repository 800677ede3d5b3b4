// Command voipgw-bench measures voipgw against the alternative side by side in the
// network-namespace lab (scripts/bench runs it; BENCHMARKS.md has the figures).
// It is a benchmark, not a test: the figures depend on the machine and its load, so
// every comparison alternates its variants within one run (A B A B …, several
// rounds) and reports medians, the ratio of the medians and the spread.
//
//	voipgw-bench -voipgw build/amd64/voipgw forward   # 1+2: pps full table vs masquerade, 100k vs 10 entries, linear chain
//	voipgw-bench -voipgw … apply                      # 3: voipgw apply vs nft -f of the rendered table
//	voipgw-bench -voipgw … daemon                     # 4: RSS idle and over a soak with 50 phones, CPU idle
//
// Every namespace it creates is removed on exit, on error and on SIGINT/SIGTERM.
// Only TEST-NET addresses are used; no namespace has a route out of the lab.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/voipgw/voipgw/lab"
)

var (
	voipgwBin = flag.String("voipgw", "", "the voipgw binary to measure (required)")
	rounds    = flag.Int("rounds", 7, "rounds per comparison (each round runs every variant once)")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: voipgw-bench -voipgw BIN [flags] forward|apply|daemon ...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *voipgwBin == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fatal("needs root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		fatal("the nft command is not installed")
	}
	abs, err := filepath.Abs(*voipgwBin)
	if err != nil {
		fatal("%v", err)
	}
	*voipgwBin = abs
	for _, what := range flag.Args() {
		var err error
		switch what {
		case "forward":
			err = withLab(benchForward)
		case "apply":
			err = withLab(benchApply)
		case "daemon":
			err = withLab(benchDaemon)
		default:
			flag.Usage()
			os.Exit(2)
		}
		if err != nil {
			fatal("%s: %v", what, err)
		}
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "voipgw-bench: "+format+"\n", args...)
	cleanupAll()
	os.Exit(1)
}

// Cleanup of the current lab, also from the signal handler.
var (
	cleanMu  sync.Mutex
	cleanups []func()
)

func cleanupAll() {
	cleanMu.Lock()
	defer cleanMu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
}

func init() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "voipgw-bench: %v: removing the lab\n", s)
		cleanupAll()
		os.Exit(1)
	}()
}

// env is one lab with a scratch directory for configs and voipgw's state.
type env struct {
	l   *lab.Lab
	dir string
}

func withLab(fn func(e *env) error) error {
	dir, err := os.MkdirTemp("", "voipgw-bench")
	if err != nil {
		return err
	}
	l, err := lab.New(fmt.Sprintf("vgb%d", os.Getpid()%100000))
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("lab: %w", err)
	}
	e := &env{l: l, dir: dir}
	cleanMu.Lock()
	cleanups = append(cleanups, func() {
		if err := l.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "voipgw-bench: lab close: %v\n", err)
		}
		os.RemoveAll(dir)
	})
	cleanMu.Unlock()
	defer cleanupAll()
	return fn(e)
}

// write puts content into the scratch directory and returns the path.
func (e *env) write(name, content string) (string, error) {
	p := filepath.Join(e.dir, name)
	return p, os.WriteFile(p, []byte(content), 0o644)
}

// voipgw runs the binary in the gateway namespace with the given config and its own state dir.
func (e *env) voipgw(cfg string, args ...string) (string, error) {
	args = append(args, "--config", cfg, "--state-dir", cfg+".state")
	return e.l.GW.Run(*voipgwBin, args...)
}

// nft runs nft -f on a script in the gateway namespace.
func (e *env) nft(script string) error {
	p, err := e.write("script.nft", script)
	if err != nil {
		return err
	}
	_, err = e.l.GW.Run("nft", "-f", p)
	return err
}

// Configs. Name-based profiles are off (cloudoe-sbc and cloudoe-platform are on by
// default), so apply resolves nothing: DNS is not part of any figure, and every
// allowlist entry is a literal address.
const noNameProfiles = `
config profile
	option name 'cloudoe-sbc'
	option enabled '0'

config profile
	option name 'cloudoe-platform'
	option enabled '0'
`

// Target is where the packet generator sends: an allowlisted address and port of
// the inet namespace (an RTP port, so the SIP/RTP timeout and media-tracking rules
// of the table are on the packet's path too).
const targetPort = 40000

// entries returns n distinct exact allowlist entries (address, udp port) as one UCI
// allow section, the target among them. Addresses are the even ones of
// 198.51.100.0/24 and 203.0.113.0/24 and ports step by two, so that voipgw's
// normalisation cannot merge neighbours into ranges: every entry is one element of
// the hash set allow4.
func entries(n int) (section string, pairs [][2]string) {
	addrs := []string{}
	for _, net := range []string{"203.0.113.", "198.51.100."} {
		for i := 10; i <= 254; i += 2 {
			addrs = append(addrs, fmt.Sprintf("%s%d", net, i))
		}
	}
	// Few addresses × many ports or, for small n, one address × n ports.
	na := min(len(addrs), max(1, n/400))
	for na > 1 && n%na != 0 {
		na--
	}
	np := n / na
	var b strings.Builder
	b.WriteString("\nconfig allow\n\toption name 'bench'\n")
	for _, a := range addrs[:na] {
		fmt.Fprintf(&b, "\tlist dest '%s'\n", a)
	}
	for i := range np {
		fmt.Fprintf(&b, "\tlist port 'udp/%d'\n", targetPort+2*i)
	}
	for _, a := range addrs[:na] {
		for i := range np {
			pairs = append(pairs, [2]string{a, fmt.Sprint(targetPort + 2*i)})
		}
	}
	return b.String(), pairs
}
