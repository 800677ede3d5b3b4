package sipfix

import (
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/voipgw/voipgw/uci"
)

const owFirewall = `config defaults
	option input 'REJECT'
	option forward 'REJECT'

config zone
	option name 'lan'
	list network 'lan'
	option input 'ACCEPT'

config zone
	option name 'wan'
	list network 'wan'
	option masq '1'

config zone 'voipgw_zone'
	option name 'voipgw'
	list device 'voice'
	option input 'ACCEPT'

config zone
	option name 'phones'
	option network 'phones'
	list helper 'tftp'
	list helper 'sip'

config rule
	option name 'sip-alg'
	option src 'phones'
	option target 'HELPER'
	option set_helper 'sip'
`

const owNetwork = `config interface 'lan'
	option device 'br-lan'

config interface 'phones'
	option device 'lan3'
`

func parseUCI(t *testing.T, name, s string) *uci.File {
	t.Helper()
	f, err := uci.Parse(name, strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPlanOpenWrt(t *testing.T) {
	fw, network := parseUCI(t, "firewall", owFirewall), parseUCI(t, "network", owNetwork)
	for _, tc := range []struct {
		ifname string
		cmds   []string
		undo   []string
	}{
		// voipgw's own zone (device voice): automatic helpers, switched off.
		{"voice", []string{"set firewall.voipgw_zone.auto_helper='0'"}, []string{"delete firewall.voipgw_zone.auto_helper"}},
		// a zone through its netifd interface, with sip in its helper list and a rule.
		{"lan3", []string{"delete firewall.@zone[3].helper", "add_list firewall.@zone[3].helper='tftp'", "set firewall.@rule[0].enabled='0'"},
			[]string{"delete firewall.@rule[0].enabled", "delete firewall.@zone[3].helper", "add_list firewall.@zone[3].helper='tftp'", "add_list firewall.@zone[3].helper='sip'"}},
		// the LAN is not the VoIP interface's zone.
		{"lan9", nil, nil},
	} {
		found, changes := PlanOpenWrt(fw, network, tc.ifname)
		var cmds, undo []string
		for _, c := range changes {
			cmds = append(cmds, c.Commands()...)
		}
		for i := len(changes) - 1; i >= 0; i-- {
			undo = append(undo, changes[i].RestoreCommands()...)
		}
		if !slices.Equal(cmds, tc.cmds) || !slices.Equal(undo, tc.undo) {
			t.Errorf("%s: commands %q / undo %q, want %q / %q", tc.ifname, cmds, undo, tc.cmds, tc.undo)
		}
		if len(found) != len(changes) {
			t.Errorf("%s: %d found, %d changes", tc.ifname, len(found), len(changes))
		}
	}
	// Once changed, the zone is reported neutralised and nothing more is planned.
	done := parseUCI(t, "firewall", strings.Replace(owFirewall, "list device 'voice'", "list device 'voice'\n\toption auto_helper '0'", 1))
	found, changes := PlanOpenWrt(done, network, "voice")
	if len(changes) != 0 || len(found) != 1 || !found[0].Neutralised {
		t.Errorf("after the change: found %v, changes %v", found, changes)
	}
	// A masquerading zone gets no automatic helpers from fw4.
	if _, changes := PlanOpenWrt(fw, network, "wan"); len(changes) != 0 {
		t.Errorf("masquerading zone: %v", changes)
	}
}

// The batch is fed to uci, committed and fw4 reloaded; restore writes the old values.
func TestNeutraliseOpenWrtRunsUCI(t *testing.T) {
	dir := t.TempDir()
	p := UCIPaths{Firewall: dir + "/firewall", Network: dir + "/network"}
	writeFile(t, p.Firewall, owFirewall)
	writeFile(t, p.Network, owNetwork)
	var ran []string
	orig := runUCI
	runUCI = func(stdin, name string, args ...string) error {
		ran = append(ran, strings.TrimSpace(name+" "+strings.Join(args, " ")+" <<"+stdin))
		return nil
	}
	t.Cleanup(func() { runUCI = orig })
	changes, err := NeutraliseOpenWrt(t.Context(), quiet(), p, "voice", nil)
	if err != nil || len(changes) != 1 {
		t.Fatalf("changes %v, err %v", changes, err)
	}
	if len(ran) != 3 || ran[0] != "uci batch <<set firewall.voipgw_zone.auto_helper='0'" || ran[1] != "uci commit firewall <<" {
		t.Errorf("ran %q", ran)
	}
	ran = nil
	if err := RestoreOpenWrt(t.Context(), quiet(), p, changes); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 3 || ran[0] != "uci batch <<delete firewall.voipgw_zone.auto_helper" {
		t.Errorf("restore ran %q", ran)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
