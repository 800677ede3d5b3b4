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
	"strings"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/uci"
	"github.com/voipgw/voipgw/vlan"
)

// `voipgw validate` checks a config the way apply does, without touching the
// system or resolving names. LuCI's config page calls it through rpcd with the
// unsaved form as UCI text, so the browser shows the CLI's own messages.

func init() {
	register("validate", command{order: 25, summary: "check a config as apply would (no system change, no DNS); --config - reads stdin", run: cmdValidate})
}

// validateIssue is one error or warning, with the parts LuCI maps to a field.
type validateIssue struct {
	Section string `json:"section,omitempty"` // "voice", "@allow[0]"
	Option  string `json:"option,omitempty"`
	Value   string `json:"value,omitempty"`
	Message string `json:"message"` // without the section/option prefix
	Text    string `json:"text"`    // the whole line as the CLI prints it
}

type validateResult struct {
	Valid    bool            `json:"valid"`
	Errors   []validateIssue `json:"errors"`
	Warnings []validateIssue `json:"warnings"`
}

// rpcValidateArgs is what the rpcd plugin passes on stdin (--rpc).
type rpcValidateArgs struct {
	Config string `json:"config"`
}

func cmdValidate(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	var (
		name = o.config
		src  io.Reader
	)
	switch {
	case o.rpc: // rpcd exec plugin: {"config": "<UCI text>"} on stdin
		var a rpcValidateArgs
		if err := json.NewDecoder(os.Stdin).Decode(&a); err != nil {
			return fmt.Errorf("read the rpc arguments: %w", err)
		}
		name, src = "<luci>", strings.NewReader(a.Config)
	case o.config == "-":
		name, src = "<stdin>", os.Stdin
	default:
		f, err := os.Open(o.config)
		if err != nil {
			return err
		}
		defer f.Close()
		src = f
	}
	res := validateUCI(name, src)
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		for _, w := range res.Warnings {
			fmt.Fprintf(out, "warning: %s\n", w.Text)
		}
		for _, e := range res.Errors {
			fmt.Fprintf(out, "error: %s\n", e.Text)
		}
		if res.Valid {
			fmt.Fprintf(out, "%s: valid\n", name)
		}
	}
	if !res.Valid {
		return fmt.Errorf("%s is not valid", name)
	}
	return nil
}

// validateUCI is config.FromUCI plus the network checks makePlan adds (interface
// name length, prefix lengths).
func validateUCI(name string, src io.Reader) validateResult {
	res := validateResult{Errors: []validateIssue{}, Warnings: []validateIssue{}}
	f, err := uci.Parse(name, src)
	if err != nil {
		res.Errors = append(res.Errors, validateIssue{Message: err.Error(), Text: err.Error()})
		return res
	}
	cfg, warnings, err := config.FromUCI(f)
	for _, w := range warnings {
		res.Warnings = append(res.Warnings, validateIssue{Section: w.Section, Option: w.Option, Message: w.Msg, Text: w.String()})
	}
	if err == nil {
		if derr := networkDesired(cfg).Validate(); derr != nil {
			err = &config.Error{Section: cfg.Net.Section, Msg: derr.Error()}
		}
	}
	if err != nil {
		is := validateIssue{Message: err.Error(), Text: err.Error()}
		var ce *config.Error
		if errors.As(err, &ce) {
			is = validateIssue{Section: ce.Section, Option: ce.Option, Value: ce.Value, Message: ce.Msg, Text: ce.Error()}
		}
		res.Errors = append(res.Errors, is)
		return res
	}
	res.Valid = true
	return res
}

// networkDesired is the VoIP interface a config asks for.
func networkDesired(cfg *config.Config) vlan.Desired {
	addrs := []netip.Prefix{cfg.Net.IPv4}
	if cfg.Net.IPv6.IsValid() {
		addrs = append(addrs, cfg.Net.IPv6)
	}
	d := vlan.Desired{Name: cfg.Net.Ifname, VID: cfg.Net.VID, Addrs: addrs, AccessPorts: cfg.Net.AccessPorts}
	if cfg.Net.VID != 0 {
		d.Parent = cfg.Net.Device
	}
	return d
}
