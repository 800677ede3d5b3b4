package firewall

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/uci"
	"github.com/voipgw/voipgw/uci/ucitest"
)

func parseUCI(t *testing.T, name, src string) *uci.File {
	t.Helper()
	f, err := uci.Parse(name, strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readUCI(t *testing.T, path string) *uci.File {
	t.Helper()
	f, err := uci.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFW4ZoneFor(t *testing.T) {
	// The repository's copies of a stock OpenWrt 23.05 network and firewall config.
	stockNet := readUCI(t, "../uci/testdata/network")
	stockFW := readUCI(t, "../uci/testdata/firewall")

	tests := []struct {
		name     string
		wan      string
		network  *uci.File
		fw       *uci.File
		wantZone string
		wantErr  string
	}{
		{name: "stock OpenWrt: wan zone covers netifd interface wan on device wan", wan: "wan", network: stockNet, fw: stockFW, wantZone: "wan"},
		{name: "zone lists the device itself", wan: "eth1", fw: parseUCI(t, "fw", `
config zone
	option name 'lan'
	list network 'lan'
config zone
	option name 'uplink'
	list device 'eth1'
`), wantZone: "uplink"},
		{name: "renamed zone found through the netifd interface, old ifname syntax, space-separated network option", wan: "eth0.2",
			network: parseUCI(t, "net", `
config interface 'lan'
	option ifname 'eth0.1'
config interface 'inet'
	option ifname 'eth0.2'
	option proto 'dhcp'
`),
			fw: parseUCI(t, "fw", `
config zone
	option name 'lan'
	option network 'lan'
config zone
	option name 'internet'
	option network 'inet inet6'
`), wantZone: "internet"},
		{name: "PPPoE device is no netifd device: falls back to the zone named wan", wan: "pppoe-wan", network: stockNet, fw: stockFW, wantZone: "wan"},
		{name: "voipgw's own zone is never the WAN zone", wan: "wan", fw: parseUCI(t, "fw", `
config zone 'voipgw_zone'
	option name 'voipgw'
	list device 'wan'
config zone
	option name 'wan'
	list network 'wan'
`), network: stockNet, wantZone: "wan"},
		{name: "no zone at all", wan: "wan", network: stockNet, fw: parseUCI(t, "fw", "config defaults\n"), wantErr: "no firewall4 zone covers the WAN device wan"},
		{name: "no firewall file", wan: "wan", network: stockNet, fw: nil, wantErr: "no firewall4 zone covers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, err := FW4ZoneFor("voice", tt.wan, tt.network, tt.fw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: tt.wantZone}
			if z != want {
				t.Errorf("zone = %+v, want %+v", z, want)
			}
		})
	}
}

// applyBatch applies the commands FW4Commands emits to a copy of f, so tests can
// check the commands do what they claim on a parsed file.
func applyBatch(t *testing.T, f *uci.File, cmds []string) *uci.File {
	t.Helper()
	after, err := ucitest.Apply(f, "firewall", cmds)
	if err != nil {
		t.Fatal(err)
	}
	return after
}

func TestFW4Commands(t *testing.T) {
	z := FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: "wan"}
	stockFW := readUCI(t, "../uci/testdata/firewall")

	t.Run("stock firewall: both sections are added", func(t *testing.T) {
		cmds := mustCommands(t, z, stockFW)
		want := []string{
			"set firewall.voipgw_zone=zone",
			"set firewall.voipgw_zone.name='voipgw'",
			"add_list firewall.voipgw_zone.device='voice'",
			"set firewall.voipgw_zone.input='ACCEPT'",
			"set firewall.voipgw_zone.output='ACCEPT'",
			"set firewall.voipgw_zone.forward='REJECT'",
			"set firewall.voipgw_zone.auto_helper='0'",
			"set firewall.voipgw_wan=forwarding",
			"set firewall.voipgw_wan.src='voipgw'",
			"set firewall.voipgw_wan.dest='wan'",
		}
		if !slices.Equal(cmds, want) {
			t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(want, "\n"))
		}
		after := applyBatch(t, stockFW, cmds)
		if again := mustCommands(t, z, after); len(again) != 0 {
			t.Errorf("after applying, still commands: %q", again)
		}
		// The admin's zones are untouched.
		if n := len(after.SectionsOfType("zone")); n != 3 {
			t.Errorf("zones after: %d, want lan, wan and voipgw", n)
		}
	})

	inSync := applyBatch(t, stockFW, mustCommands(t, z, stockFW))
	tests := []struct {
		name string
		z    FW4Zone
		fw   *uci.File
		want []string
	}{
		{name: "in sync: nothing to do", z: z, fw: inSync, want: nil},
		{name: "interface renamed: only the device list changes", z: FW4Zone{Name: FW4ZoneName, Device: "br-lan.20", WANZone: "wan"}, fw: inSync,
			want: []string{"delete firewall.voipgw_zone.device", "add_list firewall.voipgw_zone.device='br-lan.20'"}},
		{name: "sip.alg '1' lets fw4 attach its helpers again", z: FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: "wan", KeepHelpers: true}, fw: inSync,
			want: []string{"set firewall.voipgw_zone.auto_helper='1'"}},
		{name: "WAN zone renamed: only dest changes", z: FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: "internet"}, fw: inSync,
			want: []string{"set firewall.voipgw_wan.dest='internet'"}},
		{name: "admin's own option in voipgw's zone is kept; a changed policy is set back", z: z, fw: parseUCI(t, "fw", `
config zone 'voipgw_zone'
	option name 'voipgw'
	list device 'voice'
	option input 'ACCEPT'
	option output 'ACCEPT'
	option forward 'ACCEPT'
	option auto_helper '0'
	option log '1'
config forwarding 'voipgw_wan'
	option src 'voipgw'
	option dest 'wan'
`), want: []string{"set firewall.voipgw_zone.forward='REJECT'"}},
		{name: "device given as option instead of list is rewritten as a list", z: z, fw: parseUCI(t, "fw", `
config zone 'voipgw_zone'
	option name 'voipgw'
	option device 'voice'
	option input 'ACCEPT'
	option output 'ACCEPT'
	option forward 'REJECT'
	option auto_helper '0'
config forwarding 'voipgw_wan'
	option src 'voipgw'
	option dest 'wan'
`), want: []string{"delete firewall.voipgw_zone.device", "add_list firewall.voipgw_zone.device='voice'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := commandsConverge(t, tt.z, tt.fw, tt.want)
			if strings.Contains(tt.name, "admin's own option") {
				s := findSection(after, FW4ZoneSection)
				if o, ok := s.Get("log"); !ok || o.Values[0] != "1" {
					t.Errorf("the admin's option log was lost")
				}
			}
		})
	}
}

// The inbound rule (full cone on): added after the zone and forwarding, kept in
// step with the WAN zone, deleted when the full cone goes off, removed with the
// rest; a foreign section of its name is refused while voipgw needs the name and
// left alone otherwise.
func TestFW4InboundRule(t *testing.T) {
	z := FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: "wan", Inbound: true}
	noNAT := z
	noNAT.Inbound = false
	stockFW := readUCI(t, "../uci/testdata/firewall")
	rule := []string{
		"set firewall.voipgw_inbound=rule",
		"set firewall.voipgw_inbound.name='" + FW4InboundName + "'",
		"set firewall.voipgw_inbound.src='wan'",
		"set firewall.voipgw_inbound.dest='voipgw'",
		"set firewall.voipgw_inbound.proto='udp'",
		"set firewall.voipgw_inbound.target='ACCEPT'",
	}
	noRule := mustCommands(t, noNAT, stockFW)
	withoutRule := applyBatch(t, stockFW, noRule)
	all := mustCommands(t, z, stockFW)
	if want := slices.Concat(noRule, rule); !slices.Equal(all, want) {
		t.Fatalf("stock firewall, full cone on:\n%s\nwant:\n%s", strings.Join(all, "\n"), strings.Join(want, "\n"))
	}
	withRule := applyBatch(t, stockFW, all)
	if s := findSection(withRule, FW4InboundSection); s == nil || s.Type != "rule" {
		t.Fatalf("no rule %s after the batch:\n%s", FW4InboundSection, uci.Format(withRule))
	}

	tests := []struct {
		name string
		z    FW4Zone
		fw   *uci.File
		want []string
	}{
		{name: "in step: nothing to do", z: z, fw: withRule},
		{name: "full cone off, no rule: nothing to do", z: noNAT, fw: withoutRule},
		{name: "full cone switched on: only the rule is added", z: z, fw: withoutRule, want: rule},
		{name: "full cone switched off: only the rule goes", z: noNAT, fw: withRule, want: []string{"delete firewall.voipgw_inbound"}},
		{name: "WAN zone renamed: the forwarding's dest and the rule's src change", z: FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: "internet", Inbound: true}, fw: withRule,
			want: []string{"set firewall.voipgw_wan.dest='internet'", "set firewall.voipgw_inbound.src='internet'"}},
		{name: "a widened rule is narrowed to udp again; the admin's own option stays", z: z, fw: applyBatch(t, withRule, []string{
			"set firewall.voipgw_inbound.proto='all'", "set firewall.voipgw_inbound.log='1'"}),
			want: []string{"set firewall.voipgw_inbound.proto='udp'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := commandsConverge(t, tt.z, tt.fw, tt.want)
			if s := findSection(after, FW4InboundSection); (s != nil) != tt.z.Inbound {
				t.Errorf("rule present %v, want %v", s != nil, tt.z.Inbound)
			}
			if strings.Contains(tt.name, "admin's own option") {
				if o, ok := findSection(after, FW4InboundSection).Get("log"); !ok || o.Values[0] != "1" {
					t.Errorf("the admin's option log was lost")
				}
			}
		})
	}

	t.Run("removal deletes the rule first, then the forwarding and the zone", func(t *testing.T) {
		cmds := FW4RemoveCommands(withRule)
		if want := []string{"delete firewall.voipgw_inbound", "delete firewall.voipgw_wan", "delete firewall.voipgw_zone"}; !slices.Equal(cmds, want) {
			t.Fatalf("remove commands %q, want %q", cmds, want)
		}
		if got, orig := uci.Format(applyBatch(t, withRule, cmds)), uci.Format(stockFW); got != orig {
			t.Errorf("after removal the file differs from the original:\n%s", got)
		}
	})

	t.Run("a foreign section named voipgw_inbound", func(t *testing.T) {
		foreign := applyBatch(t, withoutRule, []string{"set firewall.voipgw_inbound=redirect", "set firewall.voipgw_inbound.name='the admin port forward'"})
		if _, err := FW4Commands(z, foreign); err == nil || !strings.Contains(err.Error(), "firewall.voipgw_inbound is a redirect section") {
			t.Errorf("full cone on: err = %v, want a refusal naming firewall.voipgw_inbound", err)
		}
		if cmds := mustCommands(t, noNAT, foreign); len(cmds) != 0 {
			t.Errorf("full cone off: the admin's section must stay, got %q", cmds)
		}
		if cmds := FW4RemoveCommands(foreign); slices.Contains(cmds, "delete firewall.voipgw_inbound") {
			t.Errorf("removal would delete the admin's section: %q", cmds)
		}
	})
}

func mustCommands(t *testing.T, z FW4Zone, fw *uci.File) []string {
	t.Helper()
	cmds, err := FW4Commands(z, fw)
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

func TestFW4CommandsRefuseForeignSection(t *testing.T) {
	fw := parseUCI(t, "fw", `
config rule 'voipgw_wan'
	option name 'the admin rule of that name'
`)
	_, err := FW4Commands(FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: "wan"}, fw)
	if err == nil || !strings.Contains(err.Error(), "firewall.voipgw_wan is a rule section") {
		t.Fatalf("err = %v, want a refusal naming firewall.voipgw_wan", err)
	}
	if cmds := FW4RemoveCommands(fw); len(cmds) != 0 {
		t.Errorf("removal would delete the admin's section: %q", cmds)
	}
}

func TestFW4RemoveCommands(t *testing.T) {
	stockFW := readUCI(t, "../uci/testdata/firewall")
	if cmds := FW4RemoveCommands(stockFW); len(cmds) != 0 {
		t.Errorf("nothing of voipgw's in the stock file, got %q", cmds)
	}
	with := applyBatch(t, stockFW, mustCommands(t, FW4Zone{Name: FW4ZoneName, Device: "voice", WANZone: "wan"}, stockFW))
	cmds := FW4RemoveCommands(with)
	want := []string{"delete firewall.voipgw_wan", "delete firewall.voipgw_zone"}
	if !slices.Equal(cmds, want) {
		t.Fatalf("remove commands %q, want %q", cmds, want)
	}
	after := applyBatch(t, with, cmds)
	if got, orig := uci.Format(after), uci.Format(stockFW); got != orig {
		t.Errorf("after removal the file differs from the original:\n%s", got)
	}
}

func TestUCIQuote(t *testing.T) {
	for in, want := range map[string]string{"voice": "'voice'", "it's": `'it'\''s'`, "": "''"} {
		if got := uciQuote(in); got != want {
			t.Errorf("uciQuote(%q) = %s, want %s", in, got, want)
		}
		// The quoted form reads back as the value in UCI syntax.
		f, err := uci.Parse("q", strings.NewReader(fmt.Sprintf("config a 'b'\n\tlist o %s\n", uciQuote(in))))
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Sections[0].Options[0].Values[0]; got != in {
			t.Errorf("%s reads back as %q, want %q", uciQuote(in), got, in)
		}
	}
}

// voipgw's filter chains hook in just before fw4's (priority filter), so its silent
// drops and counters do not depend on which table was loaded first; its other base
// chains keep their places.
func TestChainsRunBeforeFW4(t *testing.T) {
	tbl, err := Build(labSpec())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"input": "filter - 1", "forward": "filter - 1", "postrouting": "srcnat"}
	for _, c := range tbl.Chains {
		if c.Hook == nil {
			continue
		}
		w, ok := want[c.Name]
		if !ok {
			continue
		}
		if c.Hook.PrioText != w {
			t.Errorf("chain %s: priority %s (%d), want %s", c.Name, c.Hook.PrioText, c.Hook.Priority, w)
		}
		if w == "filter - 1" && c.Hook.Priority != -1 {
			t.Errorf("chain %s: priority %d, want -1", c.Name, c.Hook.Priority)
		}
		delete(want, c.Name)
	}
	if len(want) != 0 {
		t.Errorf("chains not found: %v", want)
	}
	if !strings.Contains(tbl.Render(), "type filter hook forward priority filter - 1; policy accept;") {
		t.Errorf("render does not show the forward chain at filter - 1")
	}
}

func TestTablePresent(t *testing.T) {
	requireNft(t)
	ns := lab.TestNS(t, "fw4tp")
	present := func() bool {
		var ok bool
		if err := ns.Do(func() (err error) { ok, err = TablePresent("voipgw"); return err }); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if present() {
		t.Fatal("table present in a new namespace")
	}
	tbl, err := Build(labSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { return Apply(tbl) }); err != nil {
		t.Fatal(err)
	}
	if !present() {
		t.Error("table not present after Apply")
	}
	if _, err := ns.Run("nft", "delete", "table", "inet", "voipgw"); err != nil {
		t.Fatal(err)
	}
	if present() {
		t.Error("table present after nft delete")
	}
}

// commandsConverge checks that the commands for z on fw are want and that, once
// applied, they leave nothing more to do; it returns the file they make.
func commandsConverge(t *testing.T, z FW4Zone, fw *uci.File, want []string) *uci.File {
	t.Helper()
	cmds := mustCommands(t, z, fw)
	if !slices.Equal(cmds, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(want, "\n"))
	}
	after := applyBatch(t, fw, cmds)
	if again := mustCommands(t, z, after); len(again) != 0 {
		t.Errorf("after applying, still commands: %q", again)
	}
	return after
}
