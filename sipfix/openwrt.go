package sipfix

// OpenWrt firewall4 renders its nft table from /etc/config/firewall on every start
// and reload, so a rule changed only in the kernel comes back with the next reload.
// fw4 attaches helpers per zone, for traffic coming from the zone's devices:
//   - automatically (every available helper, sip included) when the zone's
//     auto_helper is on (the default) and the zone does not masquerade;
//   - the helpers of the zone's `list helper`;
//   - `config rule` sections with target HELPER and set_helper sip for that zone.
// (fw4.uc: parse_zone, parse_rule.) voipgw tells fw4 through its config that the
// zones covering the VoIP interface attach no sip helper, commits, reloads fw4, and
// records each option's previous value so down puts exactly that back.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/voipgw/voipgw/uci"
)

// UCIPaths are the OpenWrt config files read.
type UCIPaths struct{ Firewall, Network string }

// DefaultUCIPaths are OpenWrt's.
var DefaultUCIPaths = UCIPaths{Firewall: "/etc/config/firewall", Network: "/etc/config/network"}

// UCIFound is a firewall4 setting that attaches the sip helper to the VoIP interface.
type UCIFound struct {
	Section     string `json:"section"` // firewall.<label>
	Option      string `json:"option"`
	Value       string `json:"value"`
	What        string `json:"what"`
	Neutralised bool   `json:"neutralised"`
}

func (u UCIFound) String() string {
	s := fmt.Sprintf("firewall.%s.%s='%s': %s", u.Section, u.Option, u.Value, u.What)
	if u.Neutralised {
		s += " (neutralised)"
	}
	return s
}

// UCIChange is one option voipgw changed in /etc/config/firewall, with what it was.
type UCIChange struct {
	Section string   `json:"section"` // label as uci names it: a name or @zone[N]
	Option  string   `json:"option"`
	Existed bool     `json:"existed"`
	List    bool     `json:"list"`
	Old     []string `json:"old,omitempty"`
	New     []string `json:"new"` // nil: deleted
}

func uciQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Commands is the `uci batch` that makes the change.
func (c UCIChange) Commands() []string {
	return optionCommands(c.Section, c.Option, c.Existed, c.New, c.List)
}

// RestoreCommands is the `uci batch` that puts the old value back.
func (c UCIChange) RestoreCommands() []string {
	if !c.Existed {
		return []string{"delete firewall." + c.Section + "." + c.Option}
	}
	return optionCommands(c.Section, c.Option, true, c.Old, c.List)
}

func optionCommands(section, option string, existed bool, vals []string, list bool) []string {
	key := "firewall." + section + "." + option
	if vals == nil {
		return []string{"delete " + key}
	}
	if !list {
		return []string{"set " + key + "=" + uciQuote(vals[0])}
	}
	var cmds []string
	if existed {
		cmds = append(cmds, "delete "+key)
	}
	for _, v := range vals {
		cmds = append(cmds, "add_list "+key+"="+uciQuote(v))
	}
	return cmds
}

func optValues(s *uci.Section, name string) ([]string, *uci.Option) {
	o, ok := s.Get(name)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, v := range o.Values {
		out = append(out, strings.Fields(v)...)
	}
	return out, o
}

func boolOpt(s *uci.Section, name string, def bool) bool {
	v, o := optValues(s, name)
	if o == nil || len(v) == 0 {
		return def
	}
	switch strings.ToLower(v[0]) {
	case "0", "no", "off", "false", "disabled":
		return false
	}
	return true
}

// zonesOf returns the zones whose devices include ifname, directly (`list device`)
// or through a netifd interface on it (`list network`).
func zonesOf(fw, network *uci.File, ifname string) []*uci.Section {
	var nets []string
	if network != nil {
		for _, s := range network.SectionsOfType("interface") {
			dev, _ := optValues(s, "device")
			old, _ := optValues(s, "ifname")
			if slices.Contains(dev, ifname) || slices.Contains(old, ifname) {
				nets = append(nets, s.Name)
			}
		}
	}
	var out []*uci.Section
	for _, z := range fw.SectionsOfType("zone") {
		if !boolOpt(z, "enabled", true) {
			continue
		}
		devs, _ := optValues(z, "device")
		zn, _ := optValues(z, "network")
		if slices.Contains(devs, ifname) || slices.ContainsFunc(zn, func(n string) bool { return slices.Contains(nets, n) }) {
			out = append(out, z)
		}
	}
	return out
}

// PlanOpenWrt computes what in the firewall config attaches the sip helper to
// ifname and the changes that stop it. It is pure.
func PlanOpenWrt(fw, network *uci.File, ifname string) ([]UCIFound, []UCIChange) {
	if fw == nil || ifname == "" {
		return nil, nil
	}
	autoDefault := true
	for _, d := range fw.SectionsOfType("defaults") {
		autoDefault = boolOpt(d, "auto_helper", true)
	}
	var found []UCIFound
	var changes []UCIChange
	for _, z := range zonesOf(fw, network, ifname) {
		name := z.Name
		if v, o := optValues(z, "name"); o != nil && len(v) > 0 {
			name = v[0]
		}
		helpers, ho := optValues(z, "helper")
		masq := boolOpt(z, "masq", false) || boolOpt(z, "masq6", false)
		auto := autoDefault && boolOpt(z, "auto_helper", true)
		switch {
		case slices.Contains(helpers, "sip"):
			found = append(found, UCIFound{Section: z.Label(), Option: "helper", Value: strings.Join(helpers, " "),
				What: fmt.Sprintf("zone %s (covers %s) attaches the sip helper", name, ifname)})
			rest := slices.DeleteFunc(slices.Clone(helpers), func(h string) bool { return h == "sip" })
			c := UCIChange{Section: z.Label(), Option: "helper", Existed: true, List: ho.IsList, Old: helpers, New: rest}
			if len(rest) == 0 {
				c.New = nil
			} else if !ho.IsList {
				c.New = []string{strings.Join(rest, " ")}
				c.Old = []string{strings.Join(helpers, " ")}
			}
			changes = append(changes, c)
		case len(helpers) == 0 && auto && !masq:
			v, o := optValues(z, "auto_helper")
			val := "1 (default)"
			if o != nil {
				val = strings.Join(v, " ")
			}
			found = append(found, UCIFound{Section: z.Label(), Option: "auto_helper", Value: val,
				What: fmt.Sprintf("zone %s (covers %s) attaches every available helper, sip included", name, ifname)})
			changes = append(changes, UCIChange{Section: z.Label(), Option: "auto_helper", Existed: o != nil, Old: v, New: []string{"0"}})
		case len(helpers) == 0 && !auto:
			found = append(found, UCIFound{Section: z.Label(), Option: "auto_helper", Value: "0",
				What: fmt.Sprintf("zone %s (covers %s) attaches no helper", name, ifname), Neutralised: true})
		}
		for _, r := range fw.SectionsOfType("rule") {
			target, _ := optValues(r, "target")
			set, _ := optValues(r, "set_helper")
			src, _ := optValues(r, "src")
			if len(target) == 0 || !strings.EqualFold(target[0], "helper") || !slices.Contains(set, "sip") || !slices.Contains(src, name) {
				continue
			}
			if !boolOpt(r, "enabled", true) {
				continue
			}
			v, o := optValues(r, "enabled")
			found = append(found, UCIFound{Section: r.Label(), Option: "set_helper", Value: "sip",
				What: fmt.Sprintf("rule sets the sip helper for zone %s", name)})
			changes = append(changes, UCIChange{Section: r.Label(), Option: "enabled", Existed: o != nil, Old: v, New: []string{"0"}})
		}
	}
	return found, changes
}

func parseIfExists(path string) (*uci.File, error) {
	f, err := uci.ParseFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// ReadOpenWrt reports the firewall4 settings; nothing when there is no firewall config.
func ReadOpenWrt(p UCIPaths, ifname string) ([]UCIFound, error) {
	fw, err := parseIfExists(p.Firewall)
	if err != nil || fw == nil {
		return nil, err
	}
	network, err := parseIfExists(p.Network)
	if err != nil {
		return nil, err
	}
	found, _ := PlanOpenWrt(fw, network, ifname)
	return found, nil
}

// runUCI runs the uci tool and fw4's reload; a variable for tests.
var runUCI = func(stdin string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func commitAndReload(cmds []string) error {
	if err := runUCI(strings.Join(cmds, "\n")+"\n", "uci", "batch"); err != nil {
		return err
	}
	if err := runUCI("", "uci", "commit", "firewall"); err != nil {
		return err
	}
	if _, err := os.Stat("/sbin/fw4"); err == nil {
		return runUCI("", "/sbin/fw4", "-q", "reload")
	}
	return runUCI("", "/etc/init.d/firewall", "reload")
}

// NeutraliseOpenWrt changes the firewall config (when this is OpenWrt) and reloads
// fw4. prev are the changes of the previous apply (still in the file); the result
// is prev plus this run's.
func NeutraliseOpenWrt(ctx context.Context, log *slog.Logger, p UCIPaths, ifname string, prev []UCIChange) ([]UCIChange, error) {
	fw, err := parseIfExists(p.Firewall)
	if err != nil || fw == nil {
		return prev, err
	}
	network, err := parseIfExists(p.Network)
	if err != nil {
		return prev, err
	}
	_, changes := PlanOpenWrt(fw, network, ifname)
	if len(changes) == 0 {
		return prev, nil
	}
	var cmds []string
	for _, c := range changes {
		cmds = append(cmds, c.Commands()...)
	}
	if err := commitAndReload(cmds); err != nil {
		return prev, err
	}
	for _, c := range changes {
		log.Info("sip: firewall4 config changed so fw4 attaches no sip helper to the VoIP interface", "option", "firewall."+c.Section+"."+c.Option, "was", strings.Join(c.Old, " "))
	}
	return append(prev, changes...), nil
}

// RestoreOpenWrt puts the recorded options back (newest first) and reloads fw4.
func RestoreOpenWrt(ctx context.Context, log *slog.Logger, p UCIPaths, changes []UCIChange) error {
	if len(changes) == 0 {
		return nil
	}
	if _, err := os.Stat(p.Firewall); err != nil {
		return fmt.Errorf("cannot restore %d firewall option(s): %w", len(changes), err)
	}
	var cmds []string
	for i := len(changes) - 1; i >= 0; i-- {
		cmds = append(cmds, changes[i].RestoreCommands()...)
	}
	if err := commitAndReload(cmds); err != nil {
		return err
	}
	log.Info("sip: firewall4 config restored", "options", len(changes))
	return nil
}
