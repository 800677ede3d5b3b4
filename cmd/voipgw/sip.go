package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/sipfix"
)

func init() {
	statusProviders = append(statusProviders, sipStatus)
	featurePrinters["sip"] = printSIPStatus
}

func sipTarget(cfg *config.Config, table string) sipfix.Target {
	t := sipfix.Target{Ifname: cfg.Net.Ifname, Table: table, Subnets: []netip.Prefix{cfg.Net.Subnet4()}}
	if s6 := cfg.Net.Subnet6(); s6.IsValid() {
		t.Subnets = append(t.Subnets, s6)
	}
	return t
}

// applySIP runs after voipgw's table is installed. With sip.alg '0' it neutralises
// the SIP ALG outside the table; with '1' it undoes what an earlier apply did and
// leaves the system's helpers alone. The returned state is recorded even on error,
// so down restores what was changed.
func applySIP(ctx context.Context, p *plan, prev *record, log *slog.Logger) (*sipfix.State, error) {
	var prevState *sipfix.State
	if prev != nil {
		prevState = prev.SIP
	}
	if p.cfg.SIP.ALG {
		if !prevState.Empty() {
			if err := sipfix.Restore(ctx, log, prevState); err != nil {
				return prevState, err
			}
		}
		log.Warn("sip.alg is '1': SIP helpers of the system are left alone; the provider asks for SIP ALG off")
		return nil, nil
	}
	st, err := sipfix.Neutralise(ctx, log, sipTarget(p.cfg, p.table.Name), prevState)
	if err != nil {
		return st, fmt.Errorf("switch the SIP ALG off: %w (voipgw's table is installed; run voipgw apply again or voipgw down)", err)
	}
	return st, nil
}

// downSIP restores what apply changed. Without a record it can still take voipgw's
// exclusion out of foreign rules (it is recognisable in the rule itself).
func downSIP(ctx context.Context, o *options, rec *record, log *slog.Logger) error {
	if rec != nil {
		if err := sipfix.Restore(ctx, log, rec.SIP); err != nil {
			return fmt.Errorf("%w (the record is kept; run voipgw down again)", err)
		}
		if !rec.SIP.Empty() {
			log.Info("sip: restored what apply changed outside voipgw's table", "rules", len(rec.SIP.Rules), "firewall4 options", len(rec.SIP.UCI), "modules", len(rec.SIP.Modules))
		}
		return nil
	}
	cfg, err := loadConfig(o.config, log)
	if err != nil {
		return nil // cmdDown reports the missing record and config itself
	}
	n, err := sipfix.StripExclusions(ctx, log, cfg.Net.Ifname)
	if err != nil {
		return fmt.Errorf("remove voipgw's exclusion from foreign sip helper rules: %w", err)
	}
	if n > 0 {
		log.Info("sip: no record; removed voipgw's exclusion from foreign rules", "rules", n)
	}
	return nil
}

// sipStatusValue is the "sip" feature of `voipgw status`.
type sipStatusValue struct {
	ALG      bool                                `json:"alg"` // sip.alg of the config
	Report   sipfix.Report                       `json:"report"`
	Timeouts map[string]firewall.CtTimeoutValues `json:"timeouts,omitempty"`
}

func sipStatus(r *statusReport) (string, any, []string) {
	cfg, _, err := config.Load(r.ConfigPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil, nil
		}
		return "", nil, nil // the config problem is reported by status itself
	}
	v := sipStatusValue{ALG: cfg.SIP.ALG}
	v.Report = sipfix.Detect(context.Background(), sipTarget(cfg, r.Firewall.Table))
	problems := v.Report.Problems(cfg.SIP.ALG)
	if r.Firewall.Present {
		v.Timeouts, _ = firewall.ReadCtTimeouts(r.Firewall.Table, firewall.CtTimeoutSIP, firewall.CtTimeoutRTP)
	}
	return "sip", v, problems
}

func printSIPStatus(out io.Writer, value any) {
	v, ok := value.(sipStatusValue)
	if !ok {
		return
	}
	v.Report.Print(out)
	for _, name := range slices.Sorted(maps.Keys(v.Timeouts)) {
		t := v.Timeouts[name]
		fmt.Fprintf(out, "  timeout    %s: unreplied %ds, replied %ds\n", name, t.Unreplied, t.Replied)
	}
	if v.ALG {
		fmt.Fprintf(out, "  WARNING    sip.alg is '1': SIP helpers are left alone (%d rule(s) attach the sip helper, %d VoIP conntrack entries carry it); the provider asks for SIP ALG off\n", len(v.Report.Rules), len(v.Report.Flows))
	}
}
