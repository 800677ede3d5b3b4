package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"
)

// diagnoseCheck is one probe of `voipgw diagnose`, selected by its flag
// (e.g. --sip-echo HOST:PORT, --stun HOST[:PORT]). Features add checks in init().
type diagnoseCheck struct {
	flag  string
	usage string
	run   func(ctx context.Context, target string, o *options, out io.Writer, log *slog.Logger) error
}

var diagnoseChecks []diagnoseCheck

func init() {
	register("diagnose", command{order: 60, summary: "probe the path a phone sees (SIP ALG, NAT type, ...) from the VoIP network side",
		flags: func(fs *flag.FlagSet, o *options) {
			o.diagnose = map[string]*string{}
			for _, c := range diagnoseChecks {
				o.diagnose[c.flag] = fs.String(c.flag, "", c.usage)
			}
			fs.StringVar(&o.diagSource, "source", "", "local address the STUN test sends from; 'gateway': the VoIP gateway address of the config (on the router, so the phones' NAT rules apply)")
		},
		run: cmdDiagnose})
}

// diagnoseResult is one check in `voipgw diagnose --json`.
type diagnoseResult struct {
	Check  string   `json:"check"`
	Target string   `json:"target"`
	OK     bool     `json:"ok"`
	Output []string `json:"output"`
	Error  string   `json:"error,omitempty"`
}

type diagnoseReport struct {
	OK     bool             `json:"ok"`
	Source string           `json:"source,omitempty"`
	Checks []diagnoseResult `json:"checks"`
	Error  string           `json:"error,omitempty"` // the arguments were unusable
}

func cmdDiagnose(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	if o.rpc {
		// rpcd exec plugin: {"stun": "HOST[:PORT]", "sip_echo": "HOST:PORT"} on stdin.
		var args map[string]any // rpcd may add ubus_rpc_session
		if err := json.NewDecoder(os.Stdin).Decode(&args); err != nil {
			return diagnoseFail(o, out, fmt.Errorf("read the rpc arguments: %w", err))
		}
		for _, c := range diagnoseChecks {
			if v, ok := args[strings.ReplaceAll(c.flag, "-", "_")].(string); ok && strings.TrimSpace(v) != "" {
				*o.diagnose[c.flag] = strings.TrimSpace(v)
			}
		}
		if o.diagSource == "" {
			o.diagSource = "gateway"
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 90*time.Second) // rpcd kills exec plugins after 120 s
		defer cancel()
	}
	if o.diagSource == "gateway" {
		cfg, err := loadConfig(o.config, log)
		if err != nil {
			return diagnoseFail(o, out, fmt.Errorf("--source gateway: %w", err))
		}
		o.diagSource = cfg.Net.IPv4.Addr().String()
	}
	if o.diagSource != "" {
		if _, err := netip.ParseAddr(o.diagSource); err != nil {
			return diagnoseFail(o, out, usageError{fmt.Errorf("--source %q: want an IP address or 'gateway'", o.diagSource)})
		}
	}
	rep := diagnoseReport{OK: true, Source: o.diagSource, Checks: []diagnoseResult{}}
	var errs []error
	for _, c := range diagnoseChecks {
		target := *o.diagnose[c.flag]
		if target == "" {
			continue
		}
		w := out
		var buf bytes.Buffer
		if o.json {
			w = &buf
		} else {
			fmt.Fprintf(out, "== %s %s\n", c.flag, target)
		}
		res := diagnoseResult{Check: c.flag, Target: target, OK: true, Output: []string{}}
		if err := c.run(ctx, target, o, w, log); err != nil {
			if !o.json {
				fmt.Fprintf(out, "FAILED: %v\n", err)
			}
			res.OK, res.Error, rep.OK = false, err.Error(), false
			errs = append(errs, fmt.Errorf("%s: %w", c.flag, err))
		}
		if s := strings.TrimRight(buf.String(), "\n"); s != "" {
			res.Output = strings.Split(s, "\n")
		}
		rep.Checks = append(rep.Checks, res)
	}
	if len(rep.Checks) == 0 {
		var names []string
		for _, c := range diagnoseChecks {
			names = append(names, "--"+c.flag)
		}
		return diagnoseFail(o, out, usageError{fmt.Errorf("name at least one check: %v", names)})
	}
	if o.json {
		if err := writeJSON(out, rep); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// diagnoseFail reports unusable arguments; with --json also as JSON on stdout, so
// the rpcd caller gets an object and not an empty reply.
func diagnoseFail(o *options, out io.Writer, err error) error {
	if o.json {
		if werr := writeJSON(out, diagnoseReport{Checks: []diagnoseResult{}, Error: err.Error()}); werr != nil {
			return werr
		}
	}
	return err
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
