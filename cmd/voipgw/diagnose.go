package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
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
		},
		run: cmdDiagnose})
}

func cmdDiagnose(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	ran := 0
	var errs []error
	for _, c := range diagnoseChecks {
		target := *o.diagnose[c.flag]
		if target == "" {
			continue
		}
		ran++
		fmt.Fprintf(out, "== %s %s\n", c.flag, target)
		if err := c.run(ctx, target, o, out, log); err != nil {
			fmt.Fprintf(out, "FAILED: %v\n", err)
			errs = append(errs, fmt.Errorf("%s: %w", c.flag, err))
		}
	}
	if ran == 0 {
		var names []string
		for _, c := range diagnoseChecks {
			names = append(names, "--"+c.flag)
		}
		return usageError{fmt.Errorf("name at least one check: %v", names)}
	}
	return errors.Join(errs...)
}
