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
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: voipgw <command> [flags]

commands:
  render   print the nftables table voipgw would install (touches nothing)
  apply    validate the config, create/repair the VoIP network, install the table atomically
  status   show the VoIP network and the table as the kernel has them
  down     remove exactly what voipgw created
  version  print the version

common flags:
  --config FILE     UCI config (default /etc/config/voipgw)
  --state-dir DIR   where voipgw records what it created (default /run/voipgw)
`

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
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // logread and journald add their own timestamps
			}
			return a
		},
	}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("voipgw "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := &options{}
	fs.StringVar(&opts.config, "config", defaultConfigPath, "UCI config file")
	fs.StringVar(&opts.stateDir, "state-dir", defaultStateDir(), "directory for voipgw's record of what it created")
	fs.BoolVar(&opts.json, "json", false, "status: print JSON")
	fs.BoolVar(&opts.noResolve, "no-resolve", false, "render: do not resolve host names (show what the config alone gives)")

	var f func(context.Context, *options, io.Writer, *slog.Logger) error
	switch cmd {
	case "render":
		f = cmdRender
	case "apply":
		f = cmdApply
	case "status":
		f = cmdStatus
	case "down":
		f = cmdDown
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "voipgw %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "voipgw: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
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
	config    string
	stateDir  string
	json      bool
	noResolve bool
}

const defaultConfigPath = "/etc/config/voipgw"

func defaultStateDir() string {
	if d := os.Getenv("VOIPGW_STATE_DIR"); d != "" {
		return d
	}
	return "/run/voipgw"
}
