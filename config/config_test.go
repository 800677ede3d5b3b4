package config

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voipgw/voipgw/uci"
)

// load parses src as /etc/config/voipgw and validates it.
func load(t *testing.T, src string) (*Config, []Warning, error) {
	t.Helper()
	f, err := uci.Parse("voipgw", strings.NewReader(src))
	if err != nil {
		t.Fatalf("uci.Parse: %v\n%s", err, src)
	}
	return FromUCI(f)
}

func mustLoad(t *testing.T, src string) (*Config, []Warning) {
	t.Helper()
	c, w, err := load(t, src)
	if err != nil {
		t.Fatalf("FromUCI: %v\n%s", err, src)
	}
	return c, w
}

// goodUCI is a small valid config; the bad-config cases edit it.
const goodUCI = `config voipgw 'main'
	option wan 'wan'
	list lan 'br-lan'

config scan 'scan'
	option enabled '1'

config vlan 'voice'
	option device 'br-lan'
	option vid '20'
	option ifname 'voice'
	option ipaddr '192.168.20.1/24'
`

func TestExampleConfig(t *testing.T) {
	c, warnings, err := Load("../openwrt/voipgw.config")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"table", c.Table, "voipgw"},
		{"wan", c.WAN, "wan"},
		{"lan", c.LAN, []string{"br-lan"}},
		{"icmp_rate", c.ICMPRate, uint64(10)},
		{"section", c.Net.Section, "voice"},
		{"device", c.Net.Device, "br-lan"},
		{"vid", c.Net.VID, 20},
		{"ifname", c.Net.Ifname, "voice"},
		{"ports", c.Net.AccessPorts, []string{"lan4"}},
		{"ipaddr", c.Net.IPv4, netip.MustParsePrefix("192.168.20.1/24")},
		{"subnet4", c.Net.Subnet4(), netip.MustParsePrefix("192.168.20.0/24")},
		{"ip6addr", c.Net.IPv6, netip.MustParsePrefix("fd00:20::1/64")},
		{"subnet6", c.Net.Subnet6(), netip.MustParsePrefix("fd00:20::/64")},
		{"profiles", c.Profiles, []string{"base", "cloudoe-sbc", "cloudoe-platform", "yealink"}},
		{"dns upstream", len(c.DNS.Upstream), 0},
		{"scan", c.Scan, Scan{Enabled: true, Threshold: 10, Window: 3 * time.Second, Timeout: time.Hour}},
	}
	for _, ck := range checks {
		if !equalAny(ck.got, ck.want) {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	sources := map[string]bool{}
	for _, a := range c.Allows {
		sources[a.Source] = true
		if len(a.Dests) == 0 || len(a.Ports) == 0 {
			t.Errorf("allow from %s has no dests or no ports: %+v", a.Source, a)
		}
	}
	for _, s := range []string{"profile base", "profile cloudoe-sbc", "profile cloudoe-platform", "profile yealink"} {
		if !sources[s] {
			t.Errorf("no allow entries from %s", s)
		}
	}
	for _, s := range []string{"profile webex", "allow own-pbx"} {
		if sources[s] {
			t.Errorf("allow entries from disabled %s", s)
		}
	}
}

// The file the package installs as /etc/config/voipgw loads too.
func TestPackagedConfigLoads(t *testing.T) {
	if _, _, err := Load("../openwrt/files/voipgw.config"); err != nil {
		t.Fatal(err)
	}
}

func equalAny(a, b any) bool {
	switch x := a.(type) {
	case []string:
		return slices.Equal(x, b.([]string))
	}
	return a == b
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, vlan string
		ifname     string
		vid        int
	}{
		{"vlan without ifname", "\toption device 'br-lan'\n\toption vid '20'\n", "br-lan.20", 20},
		{"port without vid", "\toption device 'lan4'\n", "lan4", 0},
		{"explicit ifname", "\toption device 'eth0'\n\toption vid '4094'\n\toption ifname 'phones'\n", "phones", 4094},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, w := mustLoad(t, "config voipgw 'main'\n\toption wan 'wan'\n\nconfig vlan 'voice'\n"+tc.vlan+"\toption ipaddr '10.20.0.1/16'\n")
			if len(w) != 0 {
				t.Errorf("warnings: %v", w)
			}
			if c.Net.Ifname != tc.ifname || c.Net.VID != tc.vid {
				t.Errorf("ifname, vid = %q, %d; want %q, %d", c.Net.Ifname, c.Net.VID, tc.ifname, tc.vid)
			}
			if c.Table != "voipgw" {
				t.Errorf("table = %q", c.Table)
			}
			want := Scan{Enabled: true, Threshold: 10, Window: 3 * time.Second, Timeout: time.Hour}
			if c.Scan != want {
				t.Errorf("scan = %+v, want %+v", c.Scan, want)
			}
			if c.ICMPRate != DefaultICMPRate {
				t.Errorf("icmp_rate = %d", c.ICMPRate)
			}
			if !slices.Equal(c.Profiles, []string{"base", "cloudoe-sbc", "cloudoe-platform"}) {
				t.Errorf("profiles = %v", c.Profiles)
			}
			if len(c.LAN) != 0 || c.Net.IPv6.IsValid() || c.Net.Subnet6().IsValid() {
				t.Errorf("lan %v, ip6 %v: want none", c.LAN, c.Net.IPv6)
			}
		})
	}
}

func TestDefaultIfnameTooLong(t *testing.T) {
	_, _, err := load(t, "config voipgw 'main'\n\toption wan 'wan'\n\nconfig vlan 'voice'\n\toption device 'abcdefghijkl'\n\toption vid '2000'\n\toption ipaddr '10.0.0.1/24'\n")
	if err == nil || !strings.Contains(err.Error(), "voipgw.voice.device='abcdefghijkl'") {
		t.Errorf("err = %v", err)
	}
}

func TestBadConfigs(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(goodUCI, old) {
			panic("goodUCI has no " + old)
		}
		return strings.Replace(goodUCI, old, new, 1)
	}
	edit := func(oldnew ...string) string {
		return strings.NewReplacer(oldnew...).Replace(goodUCI)
	}
	allowSection := func(dest, port string) string {
		return goodUCI + "\nconfig allow\n\toption name 'pbx'\n\tlist dest '" + dest + "'\n\tlist port '" + port + "'\n"
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"vid 0", replace("vid '20'", "vid '0'"), "voipgw.voice.vid='0'"},
		{"vid 4095", replace("vid '20'", "vid '4095'"), "voipgw.voice.vid='4095'"},
		{"vid abc", replace("vid '20'", "vid 'abc'"), "voipgw.voice.vid='abc'"},
		{"vid negative", replace("vid '20'", "vid '-1'"), "voipgw.voice.vid='-1'"},
		{"ipaddr without prefix", replace("'192.168.20.1/24'", "'192.168.20.1'"), "voipgw.voice.ipaddr='192.168.20.1'"},
		{"ipaddr IPv6", replace("'192.168.20.1/24'", "'fd00:20::1/64'"), "voipgw.voice.ipaddr='fd00:20::1/64'"},
		{"ipaddr network address", replace("'192.168.20.1/24'", "'192.168.20.0/24'"), "voipgw.voice.ipaddr='192.168.20.0/24'"},
		{"ipaddr broadcast address", replace("'192.168.20.1/24'", "'192.168.20.255/24'"), "voipgw.voice.ipaddr='192.168.20.255/24'"},
		{"ipaddr /31", replace("'192.168.20.1/24'", "'192.168.20.1/31'"), "voipgw.voice.ipaddr='192.168.20.1/31'"},
		{"ipaddr missing", replace("\toption ipaddr '192.168.20.1/24'\n", ""), "voipgw.voice.ipaddr=''"},
		{"ip6addr garbage", goodUCI + "\toption ip6addr 'fd00::zz/64'\n", "voipgw.voice.ip6addr='fd00::zz/64'"},
		{"ip6addr IPv4", goodUCI + "\toption ip6addr '10.0.0.1/24'\n", "voipgw.voice.ip6addr='10.0.0.1/24'"},
		{"ip6addr without prefix", goodUCI + "\toption ip6addr 'fd00:20::1'\n", "voipgw.voice.ip6addr='fd00:20::1'"},
		{"ip6addr /128", goodUCI + "\toption ip6addr 'fd00:20::1/128'\n", "voipgw.voice.ip6addr='fd00:20::1/128'"},
		{"ip6addr anycast", goodUCI + "\toption ip6addr 'fd00:20::/64'\n", "voipgw.voice.ip6addr='fd00:20::/64'"},
		{"unknown profile", goodUCI + "\nconfig profile\n\toption name 'nosuch'\n", "voipgw.@profile[0].name='nosuch'"},
		{"profile enabled maybe", goodUCI + "\nconfig profile\n\toption name 'yealink'\n\toption enabled 'maybe'\n", "voipgw.@profile[0].enabled='maybe'"},
		{"allow port 0", allowSection("192.0.2.10", "udp/0"), "voipgw.@allow[0].port='udp/0'"},
		{"allow port sctp", allowSection("192.0.2.10", "sctp/5"), "voipgw.@allow[0].port='sctp/5'"},
		{"allow port 70000", allowSection("192.0.2.10", "udp/70000"), "voipgw.@allow[0].port='udp/70000'"},
		{"allow port reversed", allowSection("192.0.2.10", "udp/20000-10000"), "voipgw.@allow[0].port='udp/20000-10000'"},
		{"allow port without proto", allowSection("192.0.2.10", "5060"), "voipgw.@allow[0].port='5060'"},
		{"allow dest a..b", allowSection("a..b", "udp/5060"), "voipgw.@allow[0].dest='a..b'"},
		{"allow dest host bits", allowSection("192.0.2.1/24", "udp/5060"), "voipgw.@allow[0].dest='192.0.2.1/24'"},
		{"allow dest 0.0.0.0/0", allowSection("0.0.0.0/0", "udp/5060"), "voipgw.@allow[0].dest='0.0.0.0/0'"},
		{"allow dest ::/0", allowSection("::/0", "udp/5060"), "voipgw.@allow[0].dest='::/0'"},
		{"allow without dest", goodUCI + "\nconfig allow\n\tlist port 'udp/5060'\n", "voipgw.@allow[0].dest=''"},
		{"allow without port", goodUCI + "\nconfig allow\n\tlist dest '192.0.2.1'\n", "voipgw.@allow[0].port=''"},
		{"missing wan", replace("\toption wan 'wan'\n", ""), "voipgw.main.wan=''"},
		{"wan bad ifname", replace("option wan 'wan'", "option wan 'w an'"), "voipgw.main.wan='w an'"},
		{"missing main section", replace("config voipgw 'main'\n\toption wan 'wan'\n\tlist lan 'br-lan'\n", ""), "voipgw.main: missing section"},
		{"missing vlan section", goodUCI[:strings.Index(goodUCI, "config vlan")], "voipgw.voice: missing section"},
		{"two vlan sections", goodUCI + "\nconfig vlan 'voice2'\n\toption device 'eth1'\n\toption ipaddr '10.0.0.1/24'\n", "voipgw.voice2: only one vlan section"},
		{"two anonymous vlan sections", goodUCI + "\nconfig vlan\n\toption device 'eth1'\n\toption ipaddr '10.0.0.1/24'\n", "voipgw.@vlan[1]: only one vlan section"},
		{"lan equal to wan", replace("list lan 'br-lan'", "list lan 'wan'"), "voipgw.main.lan='wan'"},
		{"lan equal to VoIP ifname", replace("list lan 'br-lan'", "list lan 'voice'"), "voipgw.main.lan='voice'"},
		{"lan equal to VoIP port", edit("\toption vid '20'\n\toption ifname 'voice'\n", "", "device 'br-lan'", "device 'lan4'", "list lan 'br-lan'", "list lan 'lan4'"), "voipgw.main.lan='lan4'"},
		{"ifname equal to wan", replace("option ifname 'voice'", "option ifname 'wan'"), "voipgw.voice.ifname='wan'"},
		{"VoIP port is wan", edit("\toption vid '20'\n\toption ifname 'voice'\n", "", "device 'br-lan'", "device 'wan'"), "voipgw.voice.device='wan'"},
		{"table with dash", replace("\tlist lan", "\toption table 'voip-gw'\n\tlist lan"), "voipgw.main.table='voip-gw'"},
		{"table too long", replace("\tlist lan", "\toption table 'a23456789012345678901234567890123'\n\tlist lan"), "voipgw.main.table='a23456789012345678901234567890123'"},
		{"table as list", replace("\tlist lan", "\tlist table 'a'\n\tlist table 'b'\n\tlist lan"), "voipgw.main.table='a b'"},
		{"boolean maybe", replace("option enabled '1'", "option enabled 'maybe'"), "voipgw.scan.enabled='maybe'"},
		{"scan threshold 1", replace("option enabled '1'", "option threshold '1'"), "voipgw.scan.threshold='1'"},
		{"scan window 0", replace("option enabled '1'", "option window '0'"), "voipgw.scan.window='0'"},
		{"icmp_rate 0", replace("\tlist lan", "\toption icmp_rate '0'\n\tlist lan"), "voipgw.main.icmp_rate='0'"},
		{"dns upstream", goodUCI + "\nconfig dns 'dns'\n\tlist upstream 'resolver'\n", "voipgw.dns.upstream='resolver'"},
		{"access ports without vid", replace("\toption vid '20'\n", "\tlist ports 'lan4'\n"), "voipgw.voice.ports='lan4'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := load(t, tc.src)
			if err == nil {
				t.Fatalf("no error; want %s\n%s", tc.want, tc.src)
			}
			if c != nil {
				t.Errorf("config returned along with the error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error: %v", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{Section: "voice", Option: "vid", Value: "5000", Msg: "bad"}, "voipgw.voice.vid='5000': bad"},
		{Error{Section: "main", Option: "wan", Msg: "missing"}, "voipgw.main.wan='': missing"},
		{Error{Section: "voice", Msg: "missing section"}, "voipgw.voice: missing section"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestWarnings(t *testing.T) {
	src := goodUCI + "\toption colour 'blue'\n\nconfig frobnicate\n\toption x 'y'\n\nconfig profile\n\toption name 'yealink'\n\toption typo '1'\n"
	c, w := mustLoad(t, src)
	if c == nil {
		t.Fatal("no config")
	}
	var got []string
	for _, x := range w {
		got = append(got, x.String())
	}
	want := []string{
		"voipgw.voice.colour: unknown option is ignored",
		`voipgw.@frobnicate[0]: unknown section type "frobnicate" is ignored`,
		"voipgw.@profile[0].typo: unknown option is ignored",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n got %q\nwant %q", got, want)
	}
	// The unknown section's option is not warned about on its own: the section is.
	if !slices.Contains(c.Profiles, "yealink") {
		t.Errorf("profiles = %v", c.Profiles)
	}
	// Warnings come back with an error too, so the admin sees both.
	_, w, err := load(t, strings.Replace(src, "vid '20'", "vid '0'", 1))
	if err == nil || len(w) != 3 {
		t.Errorf("err %v, %d warnings; want an error and 3 warnings", err, len(w))
	}
}

func TestHash(t *testing.T) {
	c1, _ := mustLoad(t, goodUCI)
	c2, _ := mustLoad(t, goodUCI)
	if c1.Hash() != c2.Hash() {
		t.Errorf("hash differs for identical input: %s %s", c1.Hash(), c2.Hash())
	}
	if len(c1.Hash()) != 16 {
		t.Errorf("hash %q: want 16 hex digits", c1.Hash())
	}
	// A comment or a reordering of options changes nothing effective.
	c3, _ := mustLoad(t, "# comment\n"+strings.Replace(goodUCI, "\toption vid '20'\n\toption ifname 'voice'\n", "\toption ifname 'voice'\n\toption vid '20'\n", 1))
	if c3.Hash() != c1.Hash() {
		t.Errorf("hash changed by a comment and option order")
	}
	seen := map[string]string{c1.Hash(): "original"}
	for _, tc := range []struct{ name, old, new string }{
		{"vid", "vid '20'", "vid '21'"},
		{"ipaddr", "'192.168.20.1/24'", "'192.168.20.2/24'"},
		{"ifname", "ifname 'voice'", "ifname 'phones'"},
		{"wan", "wan 'wan'", "wan 'eth1'"},
		{"lan", "lan 'br-lan'", "lan 'br-lan2'"},
		{"scan", "enabled '1'", "enabled '0'"},
		{"scan threshold", "enabled '1'", "threshold '11'"},
		{"profile", "config scan", "config profile\n\toption name 'yealink'\n\nconfig scan"},
		{"allow", "config scan", "config allow\n\tlist dest '192.0.2.9'\n\tlist port 'udp/5060'\n\nconfig scan"},
	} {
		c, _ := mustLoad(t, strings.Replace(goodUCI, tc.old, tc.new, 1))
		h := c.Hash()
		if prev, dup := seen[h]; dup {
			t.Errorf("changing %s gives the same hash as %s: %s", tc.name, prev, h)
		}
		seen[h] = tc.name
	}
}

func TestProfileSections(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		want        []string
	}{
		{"defaults", "", []string{"base", "cloudoe-sbc", "cloudoe-platform"}},
		{"disable default", "config profile\n\toption name 'cloudoe-platform'\n\toption enabled '0'\n", []string{"base", "cloudoe-sbc"}},
		{"disable base with no", "config profile\n\toption name 'base'\n\toption enabled 'no'\n", []string{"cloudoe-sbc", "cloudoe-platform"}},
		{"enable without enabled option", "config profile\n\toption name 'gigaset'\n", []string{"base", "cloudoe-sbc", "cloudoe-platform", "gigaset"}},
		{"catalog order, not config order", "config profile\n\toption name 'webex'\n\nconfig profile\n\toption name 'yealink'\n\toption enabled 'on'\n", []string{"base", "cloudoe-sbc", "cloudoe-platform", "yealink", "webex"}},
		{"explicitly enabled default", "config profile\n\toption name 'base'\n\toption enabled '1'\n", []string{"base", "cloudoe-sbc", "cloudoe-platform"}},
		{"named section", "config profile 'plat'\n\toption name 'cloudoe-platform'\n\toption enabled 'off'\n", []string{"base", "cloudoe-sbc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := mustLoad(t, goodUCI+"\n"+tc.extra)
			if !slices.Equal(c.Profiles, tc.want) {
				t.Errorf("profiles = %v, want %v", c.Profiles, tc.want)
			}
			got := map[string]bool{}
			for _, a := range c.Allows {
				got[strings.TrimPrefix(a.Source, "profile ")] = true
			}
			for name := range got {
				if !slices.Contains(tc.want, name) {
					t.Errorf("allow entries from disabled profile %s", name)
				}
			}
			for _, name := range tc.want {
				if !got[name] {
					t.Errorf("no allow entries from enabled profile %s", name)
				}
			}
		})
	}
}

func TestAllowSections(t *testing.T) {
	c, _ := mustLoad(t, goodUCI+`
config allow
	option name 'own-pbx'
	list dest 'PBX.example.net.'
	list dest '*.example.org'
	list dest '192.0.2.0/28'
	list dest '::ffff:198.51.100.7'
	list port 'udp-tcp/5060'
	list port 'udp/10000-20000'

config allow 'off'
	list dest '192.0.2.99'
	list port 'udp/1'
	option enabled '0'

config allow 'unnamed'
	option dest '192.0.2.100'
	option port 'tcp/443'
`)
	var own, unnamed *Allow
	for i, a := range c.Allows {
		switch a.Source {
		case "allow own-pbx":
			own = &c.Allows[i]
		case "allow unnamed":
			unnamed = &c.Allows[i]
		case "allow off":
			t.Errorf("disabled allow section is in the config")
		}
	}
	if own == nil || unnamed == nil {
		t.Fatalf("allows: %+v", c.Allows)
	}
	var dests, ports []string
	for _, d := range own.Dests {
		dests = append(dests, d.String())
	}
	for _, p := range own.Ports {
		ports = append(ports, p.String())
	}
	if want := []string{"pbx.example.net", "*.example.org", "192.0.2.0/28", "198.51.100.7"}; !slices.Equal(dests, want) {
		t.Errorf("dests = %v, want %v", dests, want)
	}
	if want := []string{"udp/5060", "tcp/5060", "udp/10000-20000"}; !slices.Equal(ports, want) {
		t.Errorf("ports = %v, want %v", ports, want)
	}
	if len(unnamed.Dests) != 1 || unnamed.Dests[0].String() != "192.0.2.100" || len(unnamed.Ports) != 1 || unnamed.Ports[0].String() != "tcp/443" {
		t.Errorf("unnamed = %+v", unnamed)
	}
	// Profile entries come first, the admin's own after them.
	if last := c.Allows[len(c.Allows)-1].Source; last != "allow unnamed" {
		t.Errorf("last allow is from %s", last)
	}
}
