// Command voipgw puts IP phones in their own network on the router they sit behind:
// their own VLAN and subnet, an egress-only allowlist to the SIP provider, no way
// to the LAN, nothing open inbound, SIP ALG off and port scans ignored.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

// command is one subcommand. Commands register themselves in init() of their own
// file, so features add commands without touching this one.
type command struct {
	summary string
	run     func(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error
	flags   func(fs *flag.FlagSet, o *options) // extra flags, may be nil
	order   int                                // position in the usage text
}

var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

func init() {
	register("render", command{order: 10, summary: "print the nftables table voipgw would install (touches nothing)", run: cmdRender})
	register("apply", command{order: 20, summary: "validate the config, create/repair the VoIP network, install the table atomically", run: cmdApply})
	register("status", command{order: 30, summary: "show the VoIP network and the table as the kernel has them", run: cmdStatus})
	register("down", command{order: 40, summary: "remove exactly what voipgw created", run: cmdDown})
}

func usage() string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := commands[names[i]], commands[names[j]]
		if a.order != b.order {
			return a.order < b.order
		}
		return names[i] < names[j]
	})
	var b strings.Builder
	b.WriteString("usage: voipgw <command> [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(&b, "  %-12s %s\n", "version", "print the version")
	b.WriteString(`
common flags:
  --config FILE     UCI config (default /etc/config/voipgw)
  --state-dir DIR   where voipgw records what it created (default /run/voipgw)
  --json            machine-readable output where supported
`)
	return b.String()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exit codes
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return exitUsage
	}
	log := newLogger(stdout, stderr, args[0] == "run")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("voipgw "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := &options{}
	fs.StringVar(&opts.config, "config", defaultConfigPath, "UCI config file")
	fs.StringVar(&opts.stateDir, "state-dir", defaultStateDir(), "directory for voipgw's record of what it created")
	fs.BoolVar(&opts.json, "json", false, "status: print JSON")
	fs.BoolVar(&opts.rpc, "rpc", false, "validate, diagnose: read the arguments of an rpcd call as JSON from stdin")
	fs.BoolVar(&opts.noResolve, "no-resolve", false, "render: do not resolve host names (show what the config alone gives)")

	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "voipgw %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	c, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "voipgw: unknown command %q\n\n%s", cmd, usage())
		return exitUsage
	}
	if c.flags != nil {
		c.flags(fs, opts)
	}
	f := c.run
	if err := fs.Parse(rest); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "voipgw %s: unexpected arguments %q\n", cmd, fs.Args())
		return exitUsage
	}
	if err := f(ctx, opts, stdout, log); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "voipgw %s: %v\n", cmd, err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "voipgw %s: %v\n", cmd, err)
		return exitFailed
	}
	return exitOK
}

type usageError struct{ error }

type options struct {
	config     string
	stateDir   string
	json       bool
	noResolve  bool
	rpc        bool               // arguments of an rpcd call come as JSON on stdin (rpcd.go)
	diagnose   map[string]*string // flag → target, for voipgw diagnose
	diagSource string             // diagnose --source: local address of the STUN test
}

const defaultConfigPath = "/etc/config/voipgw"

func defaultStateDir() string {
	if d := os.Getenv("VOIPGW_STATE_DIR"); d != "" {
		return d
	}
	return "/run/voipgw"
}
