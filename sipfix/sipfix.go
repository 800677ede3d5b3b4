// Package sipfix finds every place a SIP ALG (the conntrack helper "sip") can act
// on the VoIP network, switches it off for that network and puts everything back
// on `down`; and it holds the SIP probe (an echo UAS and a client that compares
// field by field what the far end saw).
//
// Where a SIP helper can come from (Linux ≥ 6.0 attaches helpers only by rule):
//   - nft rules of other tables: `ct helper set` naming a ct helper object of type
//     sip, or iptables-nft's `-j CT --helper sip` (rules.go, nft.go);
//   - OpenWrt firewall4, which renders such rules per zone from /etc/config/firewall
//     (auto_helper, list helper, rules with target helper) (openwrt.go);
//   - the modules nf_conntrack_sip / nf_nat_sip themselves (modules.go);
//   - conntrack entries that already carry the helper (conntrack.go).
package sipfix

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
)

// Target is the VoIP network.
type Target struct {
	Ifname  string
	Subnets []netip.Prefix
	Table   string // voipgw's own table (inet), never touched here
}

// Report is what Detect finds. It is read-only.
type Report struct {
	Rules      []Rule     `json:"rules"`       // foreign rules that attach the sip helper
	Modules    []Module   `json:"modules"`     // nf_conntrack_sip, nf_nat_sip
	Flows      []Flow     `json:"flows"`       // conntrack entries of the VoIP network with the sip helper
	OtherFlows int        `json:"other_flows"` // entries with the sip helper outside the VoIP network
	OpenWrt    []UCIFound `json:"openwrt,omitempty"`
	Errors     []string   `json:"errors,omitempty"` // parts that could not be read
}

// Active are the rules that would act on the VoIP network now.
func (r *Report) Active() []Rule {
	var out []Rule
	for _, f := range r.Rules {
		if !f.Neutralised && f.Action != ActionNone {
			out = append(out, f)
		}
	}
	return out
}

// Detect reads the kernel (and OpenWrt's firewall config, when there is one).
func Detect(ctx context.Context, t Target) Report {
	var rep Report
	fail := func(what string, err error) { rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", what, err)) }
	if n, err := dialNft(); err != nil {
		fail("nftables", err)
	} else {
		tables, err := readTables(nil, n, t.Table)
		n.Close()
		if err != nil {
			fail("nftables", err)
		}
		rep.Rules = analyse(tables, t.Ifname)
	}
	var err error
	if rep.Modules, err = ReadModules(); err != nil {
		fail("modules", err)
	}
	flows, other, err := HelperFlows(t.Subnets)
	if err != nil {
		fail("conntrack", err)
	}
	rep.Flows, rep.OtherFlows = flows, other
	if found, err := ReadOpenWrt(DefaultUCIPaths, t.Ifname); err != nil {
		fail("openwrt firewall config", err)
	} else {
		rep.OpenWrt = found
	}
	return rep
}

// Problems turns a report into status problems; alg is the config's sip.alg.
func (r *Report) Problems(alg bool) []string {
	var p []string
	if alg {
		return nil // the admin's choice; status prints a warning, not a problem
	}
	for _, f := range r.Active() {
		p = append(p, fmt.Sprintf("SIP ALG: %s attaches the sip helper to VoIP traffic: run voipgw apply", f))
	}
	for _, f := range r.Flows {
		p = append(p, fmt.Sprintf("SIP ALG: conntrack entry %s carries the sip helper", f))
	}
	for _, u := range r.OpenWrt {
		if !u.Neutralised {
			p = append(p, "SIP ALG: firewall4 config "+u.String())
		}
	}
	return p
}

// Print writes the report for `voipgw status` / `diagnose`.
func (r *Report) Print(w interface{ Write([]byte) (int, error) }) {
	fmt.Fprintf(w, "SIP ALG\n")
	if len(r.Rules) == 0 {
		fmt.Fprintf(w, "  rules      no rule attaches the sip helper\n")
	}
	for _, f := range r.Rules {
		state := "ACTIVE"
		switch {
		case f.Neutralised:
			state = "neutralised (iifname != VoIP interface)"
		case f.Action == ActionNone:
			state = "not on the VoIP network's path (hooks " + describeHooks(f.Hooks) + ")"
		}
		fmt.Fprintf(w, "  rule       %s: %s\n", f, state)
	}
	var mods []string
	for _, m := range r.Modules {
		mods = append(mods, m.String())
	}
	if len(mods) == 0 {
		mods = []string{"none"}
	}
	fmt.Fprintf(w, "  modules    %s\n", strings.Join(mods, ", "))
	fmt.Fprintf(w, "  conntrack  %d VoIP entries with the sip helper (%d others)\n", len(r.Flows), r.OtherFlows)
	for _, u := range r.OpenWrt {
		fmt.Fprintf(w, "  firewall4  %s\n", u)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  not read   %s\n", e)
	}
}

// State is what Neutralise changed outside voipgw's table; down restores it.
type State struct {
	Rules   []RuleChange `json:"rules,omitempty"`
	UCI     []UCIChange  `json:"uci,omitempty"`
	Modules []string     `json:"modules_unloaded,omitempty"`
}

// Empty tells whether nothing was changed.
func (s *State) Empty() bool {
	return s == nil || (len(s.Rules) == 0 && len(s.UCI) == 0 && len(s.Modules) == 0)
}

// Neutralise switches the SIP ALG off for the VoIP network: firewall4's config
// first (its reload rebuilds its table), then the kernel rules, then the conntrack
// entries that carry the helper, then the modules if nothing uses them. prev is the
// previous apply's state. On error the returned state still lists what was changed.
func Neutralise(ctx context.Context, log *slog.Logger, t Target, prev *State) (*State, error) {
	st := &State{}
	if prev != nil {
		st.UCI, st.Modules = prev.UCI, prev.Modules
	}
	uciChanges, err := NeutraliseOpenWrt(ctx, log, DefaultUCIPaths, t.Ifname, st.UCI)
	st.UCI = uciChanges
	if err != nil {
		return st, fmt.Errorf("firewall4: %w", err)
	}
	var prevRules []RuleChange
	if prev != nil {
		prevRules = prev.Rules
	}
	st.Rules, err = NeutraliseRules(ctx, log, t.Ifname, t.Table, prevRules)
	if err != nil {
		return st, err
	}
	n, skipped, err := DeleteHelperFlows(ctx, t.Subnets)
	if err != nil {
		return st, fmt.Errorf("conntrack: %w", err)
	}
	if skipped != "" {
		log.Debug("sip: conntrack table not read: no entry can carry the sip helper", "why", skipped)
	}
	if n > 0 {
		log.Info("sip: deleted VoIP conntrack entries that carried the sip helper; the phones re-register through the NAT without it", "entries", n)
	}
	unloaded, err := UnloadUnused(log)
	st.Modules = append(st.Modules, unloaded...)
	if err != nil {
		log.Warn("sip: could not unload the sip modules", "err", err)
	}
	return st, nil
}

// Restore undoes what Neutralise recorded: kernel rules first (as they were), then
// the firewall4 config (its reload renders its rules again), then the modules.
func Restore(ctx context.Context, log *slog.Logger, st *State) error {
	if st.Empty() {
		return nil
	}
	var errs []string
	if err := RestoreRules(ctx, log, st.Rules); err != nil {
		errs = append(errs, err.Error())
	}
	if err := RestoreOpenWrt(ctx, log, DefaultUCIPaths, st.UCI); err != nil {
		errs = append(errs, "firewall4: "+err.Error())
	}
	if err := LoadModules(log, st.Modules); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("restore SIP ALG state: %s", strings.Join(errs, "; "))
	}
	return nil
}
