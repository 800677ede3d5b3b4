package uci

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// dump renders a File like `uci show`, one line per section and option, so
// expectations stay readable.
func dump(f *File) string {
	var b strings.Builder
	if f.Package != "" {
		fmt.Fprintf(&b, "package %s\n", f.Package)
	}
	for _, s := range f.Sections {
		fmt.Fprintf(&b, "%s=%s\n", s.Label(), s.Type)
		for _, o := range s.Options {
			if o.IsList {
				fmt.Fprintf(&b, "  %s+=%q\n", o.Name, o.Values)
			} else {
				fmt.Fprintf(&b, "  %s=%q\n", o.Name, o.Values)
			}
		}
	}
	return b.String()
}

// withoutLines copies f with all Line fields zeroed, for round-trip comparisons.
func withoutLines(f *File) *File {
	c := &File{Name: f.Name, Package: f.Package}
	for _, s := range f.Sections {
		cs := *s
		cs.Line, cs.Options = 0, nil
		for _, o := range s.Options {
			co := *o
			co.Line = 0
			cs.Options = append(cs.Options, &co)
		}
		c.Sections = append(c.Sections, &cs)
	}
	return c
}

func parseString(t *testing.T, src string) *File {
	t.Helper()
	f, err := Parse("test", strings.NewReader(src))
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return f
}

// values returns the values of option opt in the section labelled label.
func values(t *testing.T, f *File, label, opt string) []string {
	t.Helper()
	for _, s := range f.Sections {
		if s.Label() == label {
			o, ok := s.Get(opt)
			if !ok {
				t.Fatalf("%s: %s has no option %q", f.Name, label, opt)
			}
			return o.Values
		}
	}
	t.Fatalf("%s: no section %s", f.Name, label)
	return nil
}

func TestRealFiles(t *testing.T) {
	tests := []struct {
		file     string
		sections int
		byType   map[string]int
		want     map[string][]string // "label.option" -> values
		lists    []string            // "label.option" that must be lists
	}{
		{
			file: "network", sections: 9,
			byType: map[string]int{"interface": 4, "device": 2, "bridge-vlan": 2, "globals": 1},
			want: map[string][]string{
				"loopback.device":       {"lo"},
				"@device[0].name":       {"br-lan"},
				"@device[0].ports":      {"lan1", "lan2", "lan3", "lan4"},
				"@device[1].name":       {"wan"},
				"@bridge-vlan[1].vlan":  {"20"},
				"@bridge-vlan[1].ports": {"lan4:u*"},
				"lan.device":            {"br-lan.1"},
				"lan.ipaddr":            {"192.168.1.1"},
				"wan6.proto":            {"dhcpv6"},
			},
			lists: []string{"@device[0].ports", "@bridge-vlan[0].ports"},
		},
		{
			file: "firewall", sections: 16,
			byType: map[string]int{"defaults": 1, "zone": 2, "forwarding": 1, "rule": 10, "redirect": 1, "include": 1},
			want: map[string][]string{
				"@defaults[0].input":     {"REJECT"},
				"@defaults[0].syn_flood": {"1"},
				"@zone[0].name":          {"lan"},
				"@zone[0].network":       {"lan"},
				"@zone[1].network":       {"wan", "wan6"},
				"@zone[1].masq":          {"1"},
				"@forwarding[0].dest":    {"wan"},
				"@rule[1].name":          {"Allow-Ping"},
				"@rule[4].icmp_type":     {"130/0", "131/0", "132/0", "143/0"},
				"@rule[4].src_ip":        {"fe80::/10"},
				"@rule[5].icmp_type":     {"echo-request", "echo-reply", "destination-unreachable", "packet-too-big", "time-exceeded", "bad-header", "unknown-header-type", "router-solicitation", "neighbour-solicitation", "router-advertisement", "neighbour-advertisement"},
				"@rule[6].dest":          {"*"},
				"@rule[6].limit":         {"1000/sec"},
				"@rule[8].name":          {"Allow-ISAKMP"},
				"sip_pbx.proto":          {"udp", "tcp"},
				"sip_pbx.dest_port":      {"5060-5061"},
				"@redirect[0].src_dport": {"10000-20000"},
				"voipgw.path":            {"/usr/share/voipgw/firewall.include"},
			},
			lists: []string{"@zone[0].network", "@zone[1].network", "sip_pbx.proto", "@rule[4].icmp_type"},
		},
		{
			file: "dhcp", sections: 8,
			byType: map[string]int{"dnsmasq": 1, "dhcp": 3, "odhcpd": 1, "host": 2, "domain": 1},
			want: map[string][]string{
				"@dnsmasq[0].local":      {"/lan/"},
				"@dnsmasq[0].resolvfile": {"/tmp/resolv.conf.d/resolv.conf.auto"},
				"lan.ra_flags":           {"managed-config", "other-config"},
				"wan.ignore":             {"1"},
				"voice.dhcp_option":      {"66,http://192.168.20.1/prov/", "42,192.168.20.1"},
				"odhcpd.loglevel":        {"4"},
				"@host[1].name":          {"deskphone-2"},
				"@domain[0].ip":          {"192.168.20.10"},
			},
			lists: []string{"lan.ra_flags", "voice.dhcp_option"},
		},
		{
			file: "system", sections: 3,
			byType: map[string]int{"system": 1, "timeserver": 1, "led": 1},
			want: map[string][]string{
				"@system[0].hostname": {"OpenWrt"},
				"@system[0].timezone": {"CET-1CEST,M3.5.0,M10.5.0/3"},
				"ntp.server":          {"0.openwrt.pool.ntp.org", "1.openwrt.pool.ntp.org", "2.openwrt.pool.ntp.org", "3.openwrt.pool.ntp.org"},
				"led_wan.mode":        {"link tx rx"},
			},
			lists: []string{"ntp.server"},
		},
		{
			file: "voipgw", sections: 4,
			byType: map[string]int{"voipgw": 1, "vlan": 1, "profile": 1, "allow": 1},
			want: map[string][]string{
				"main.wan":            {"eth1"},
				"main.lan":            {"br-lan"},
				"main.table":          {"voipgw"},
				"voice.device":        {"lan4"},
				"voice.vid":           {"20"},
				"voice.ipaddr":        {"192.168.20.1/24"},
				"@profile[0].name":    {"cloudoe-sbc"},
				"@allow[0].dest":      {"pbx.example.net"},
				"@allow[0].port":      {"udp/5060"},
				"@profile[0].enabled": {"1"},
			},
			lists: []string{"main.lan", "@allow[0].dest", "@allow[0].port"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := ParseFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Sections) != tt.sections {
				t.Errorf("%d sections, want %d:\n%s", len(f.Sections), tt.sections, dump(f))
			}
			for typ, n := range tt.byType {
				if got := len(f.SectionsOfType(typ)); got != n {
					t.Errorf("SectionsOfType(%q): %d, want %d", typ, got, n)
				}
			}
			for key, want := range tt.want {
				i := strings.LastIndexByte(key, '.')
				if got := values(t, f, key[:i], key[i+1:]); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
			for _, key := range tt.lists {
				i := strings.LastIndexByte(key, '.')
				values(t, f, key[:i], key[i+1:]) // fails if missing
				for _, s := range f.Sections {
					if o, ok := s.Get(key[i+1:]); ok && s.Label() == key[:i] && !o.IsList {
						t.Errorf("%s is not a list", key)
					}
				}
			}
		})
	}
}

func TestVoipgwDetails(t *testing.T) {
	f, err := ParseFile("testdata/voipgw")
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "testdata/voipgw" {
		t.Errorf("Name = %q", f.Name)
	}
	var got []string
	for _, s := range f.Sections {
		got = append(got, fmt.Sprintf("%s@%d/%d/%d", s.Label(), s.Line, s.Index, s.TypeIndex))
	}
	want := []string{"main@1/0/0", "voice@5/1/0", "@profile[0]@9/2/0", "@allow[0]@12/3/0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sections = %q, want %q", got, want)
	}
	main := f.Sections[0]
	if o, _ := main.Get("lan"); o.Line != 3 || !o.IsList {
		t.Errorf("main.lan = %+v", o)
	}
	if _, ok := main.Get("nope"); ok {
		t.Error("Get of a missing option succeeded")
	}
	if f.Sections[1].Anonymous || !f.Sections[2].Anonymous {
		t.Error("Anonymous flags wrong")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", ""},
		{"only comments", "# hello\n\n   # indented\n\t\n", ""},
		{"bare and quoted", "config t 'n'\n\toption a b\n\toption c 'd e'\n\toption f \"g h\"\n",
			"n=t\n  a=[\"b\"]\n  c=[\"d e\"]\n  f=[\"g h\"]\n"},
		{"concatenation", "config t n\n\toption a 'foo'\"bar\"baz\n", "n=t\n  a=[\"foobarbaz\"]\n"},
		{"single quotes keep backslashes", `config t n; option a 'x\y\'`, "n=t\n  a=[\"x\\\\y\\\\\"]\n"},
		{"double quote escapes are literal", "config t n\noption a \"q\\\"b\\\\s\\n\"\n", "n=t\n  a=[\"q\\\"b\\\\sn\"]\n"},
		{"backslash outside quotes", "config t n\noption a foo\\ bar\\'\n", "n=t\n  a=[\"foo bar'\"]\n"},
		{"uci export quote escape", "config t n\n\toption a 'it'\\''s'\n", "n=t\n  a=[\"it's\"]\n"},
		{"comment after value", "config t n # c\n\toption a b # c 'unterminated\n", "n=t\n  a=[\"b\"]\n"},
		{"comment inside a word", "config t n\n\toption a b#c\n\toption d 'e#f'\n", "n=t\n  a=[\"b\"]\n  d=[\"e#f\"]\n"},
		{"line continuation", "config t n\n\toption a \\\n'v'\n\toption b 'x'\\\n'y'\n\toption c fo\\\no\n", "n=t\n  a=[\"v\"]\n  b=[\"xy\"]\n  c=[\"foo\"]\n"},
		{"continuation in double quotes", "config t n\n\toption a \"x\\\ny\"\n", "n=t\n  a=[\"xy\"]\n"},
		{"CRLF continuation", "config t n\r\n\toption a \"x\\\r\ny\"\r\n", "n=t\n  a=[\"xy\"]\n"},
		{"multi-line quote", "config t n\n\toption a 'l1\nl2'\n\toption b \"m1\nm2\"\n", "n=t\n  a=[\"l1\\nl2\"]\n  b=[\"m1\\nm2\"]\n"},
		{"CRLF", "config t 'n'\r\n\toption a 'b'\r\n\toption c d\r\n\r\n", "n=t\n  a=[\"b\"]\n  c=[\"d\"]\n"},
		{"CR kept inside quotes", "config t n\n\toption a 'x\r\ny'\n", "n=t\n  a=[\"x\\r\\ny\"]\n"},
		{"anonymous", "config rule\nconfig rule ''\nconfig zone\nconfig rule named\nconfig rule\n",
			"@rule[0]=rule\n@rule[1]=rule\n@zone[0]=zone\nnamed=rule\n@rule[3]=rule\n"},
		{"type characters", "config bridge-vlan\nconfig 'wifi.x:y'\n", "@bridge-vlan[0]=bridge-vlan\n@wifi.x:y[0]=wifi.x:y\n"},
		{"duplicate option last wins", "config t n\n\toption a 1\n\toption b 2\n\toption a 3\n", "n=t\n  a=[\"3\"]\n  b=[\"2\"]\n"},
		{"list accumulates", "config t n\n\tlist a 1\n\toption b 2\n\tlist a 3\n", "n=t\n  a+=[\"1\" \"3\"]\n  b=[\"2\"]\n"},
		{"list after option converts", "config t n\n\toption a 1\n\tlist a 2\n", "n=t\n  a+=[\"1\" \"2\"]\n"},
		{"option after list replaces", "config t n\n\tlist a 1\n\tlist a 2\n\toption a 3\n", "n=t\n  a=[\"3\"]\n"},
		{"empty value deletes option", "config t n\n\toption a 1\n\toption b 2\n\toption a ''\n\toption c \"\"\n", "n=t\n  b=[\"2\"]\n"},
		{"empty value deletes list", "config t n\n\tlist a 1\n\toption a ''\n", "n=t\n"},
		{"empty list element kept", "config t n\n\tlist a ''\n\tlist a x\n", "n=t\n  a+=[\"\" \"x\"]\n"},
		{"named sections merge", "config t a\n\toption x 1\n\toption y 2\nconfig t b\nconfig t a\n\toption x 3\n\tlist z 4\n",
			"a=t\n  x=[\"3\"]\n  y=[\"2\"]\n  z+=[\"4\"]\nb=t\n"},
		{"short keywords", "p pkg\nc t n\no a 1\nl b 2\n", "package pkg\nn=t\n  a=[\"1\"]\n  b+=[\"2\"]\n"},
		{"semicolons", "config t n; option a 1 ;option b '2;3'\n", "n=t\n  a=[\"1\"]\n  b=[\"2;3\"]\n"},
		{"package", "package voipgw\n\nconfig t n\n", "package voipgw\nn=t\n"},
		{"quoted names", "config 't' \"n\"\n\toption 'a' \"b\"\n", "n=t\n  a=[\"b\"]\n"},
		{"no final newline", "config t n\n\toption a b", "n=t\n  a=[\"b\"]\n"},
		{"utf-8 and spaces in values", "config t n\n\toption a 'Grüße, Welt'\n", "n=t\n  a=[\"Grüße, Welt\"]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := parseString(t, tt.src)
			if got := dump(f); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			roundTrip(t, f)
		})
	}
}

func TestLines(t *testing.T) {
	src := "# c\nconfig t a\n\toption x 'multi\nline'\n\toption y \\\nz\n\n\tlist l 1\n\tlist l 2\n\toption x 2\nconfig t b\nconfig t a\n\toption y 3\n"
	f := parseString(t, src)
	a := f.Sections[0]
	if a.Line != 2 || f.Sections[1].Line != 11 {
		t.Errorf("section lines %d %d, want 2 11", a.Line, f.Sections[1].Line)
	}
	want := map[string]int{"x": 10, "y": 13, "l": 8}
	for name, line := range want {
		if o, _ := a.Get(name); o.Line != line {
			t.Errorf("%s.Line = %d, want %d", name, o.Line, line)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"option before config", "# c\noption a b\n", 2, `option "a" before the first config section`},
		{"list before config", "list a b\n", 1, `list "a" before the first config section`},
		{"unterminated single", "config t\n\toption a 'b\n\n\n", 2, "unterminated ' quote"},
		{"unterminated double", "config t\n\n\toption a \"b\\\"\n", 3, `unterminated " quote`},
		{"backslash at EOF", "config t\n\toption a b\\", 2, "backslash at end of file"},
		{"missing value", "config t\n\toption a\n", 2, "option: missing option value"},
		{"missing value before comment", "config t\n\toption a # 'b'\n", 2, "option: missing option value"},
		{"missing list name", "config t\n\tlist\n", 2, "list: missing list name"},
		{"missing type", "config\n", 1, "config: missing section type"},
		{"missing package name", "package\n", 1, "package: missing package name"},
		{"extra token", "config t\n\toption a b c\n", 2, `option: unexpected "c" after option value`},
		{"extra token after quotes", "config t\n\toption a 'b' 'c d'\n", 2, `option: unexpected "c d" after option value`},
		{"extra token on continued line", "config t\n\toption a 'b' \\\nc\n", 2, `option: unexpected "c" after option value`}, // line where the word starts
		// As in libuci, a backslash-newline splices the lines without eating
		// the next line's indentation, so here the value is an empty word.
		{"continuation keeps indentation", "config t\n\toption a \\\n\t'v'\n", 3, `option: unexpected "v" after option value`},
		{"empty extra argument", "config t\n\toption a b ''\n", 2, `option: unexpected empty argument after option value`},
		{"extra config arg", "config t n x\n", 1, `config: unexpected "x" after section name`},
		{"invalid section name", "config t 'bad-name'\n", 1, `invalid section name "bad-name"`},
		{"invalid option name", "config t\n\toption b.c d\n", 2, `invalid option name "b.c"`},
		{"empty list name", "config t\n\tlist '' x\n", 2, `invalid list name ""`},
		{"invalid type", "config 'a b'\n", 1, `invalid section type "a b"`},
		{"empty type", "config ''\n", 1, `invalid section type ""`},
		{"unknown keyword", "config t\n\toptoin a b\n", 2, `unknown keyword "optoin"`},
		{"quoted keyword", "'config' t\n", 1, `unknown keyword "config"`},
		{"NUL byte", "config t\n\toption a 'b\x00'\n", 2, "NUL byte"},
		{"control byte", "config t\n\n\toption a \x1b[0m\n", 3, "control character 0x1b"},
		{"type clash", "config t 'n'\nconfig u 'n'\n", 2, `section "n" redefined with type "u" (it is "t" since line 1)`},
		{"second package", "package a\npackage b\n", 2, "package must appear once, before the first config"},
		{"package after config", "config t\npackage p\n", 2, "package must appear once, before the first config"},
		{"invalid package", "package 'a.b'\n", 1, `invalid package name "a.b"`},
		{"line after multi-line value", "config t\n\toption a 'x\ny'\n\toption b\n", 4, "option: missing option value"},
		{"semicolon ends command", "config t\n\toption a;b\n", 2, "option: missing option value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("/etc/config/x", strings.NewReader(tt.src))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, %v; want a *SyntaxError", f, err)
			}
			want := fmt.Sprintf("/etc/config/x:%d: %s", tt.line, tt.msg)
			if !strings.HasPrefix(se.Error(), want) || se.File != "/etc/config/x" || se.Line != tt.line {
				t.Errorf("error %q, want prefix %q", se.Error(), want)
			}
		})
	}
}

func TestParseFileMissing(t *testing.T) {
	if _, err := ParseFile("testdata/does-not-exist"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

func TestFormat(t *testing.T) {
	src := "package net\nconfig zone\n\toption name lan\n\tlist network 'lan' ; list network \"it's\"\n" +
		"config 'odd#type'\nconfig interface wan\n\toption proto dhcp\n\toption note 'two\nlines'\n"
	want := `package net

config zone
	option name 'lan'
	list network 'lan'
	list network 'it'\''s'

config 'odd#type'

config interface 'wan'
	option proto 'dhcp'
	option note 'two
lines'
`
	f := parseString(t, src)
	if got := Format(f); got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	roundTrip(t, f)
}

func TestFormatRealFiles(t *testing.T) {
	for _, name := range []string{"network", "firewall", "dhcp", "system", "voipgw"} {
		f, err := ParseFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, f)
	}
}

// roundTrip checks that Format's output parses back to f and is a fixed point.
func roundTrip(t *testing.T, f *File) {
	t.Helper()
	out := Format(f)
	g, err := Parse(f.Name, strings.NewReader(out))
	if err != nil {
		t.Fatalf("reparse of Format output: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(withoutLines(f), withoutLines(g)) {
		t.Fatalf("round trip changed the file:\n%s\nbecame\n%s", dump(f), dump(g))
	}
	if again := Format(g); again != out {
		t.Fatalf("Format not stable:\n%q\n%q", out, again)
	}
}

func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz", bytes.NewReader(data))
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error is %T, not *SyntaxError: %v", err, err)
			}
			if se.Line < 1 || se.Line > 1+bytes.Count(data, []byte{'\n'}) {
				t.Fatalf("error line %d out of range: %v", se.Line, err)
			}
			return
		}
		types := map[string]int{}
		for i, s := range file.Sections {
			if s.Index != i || s.TypeIndex != types[s.Type] || s.Anonymous != (s.Name == "") {
				t.Fatalf("bad section bookkeeping: %+v", s)
			}
			types[s.Type]++
			for _, o := range s.Options {
				if len(o.Values) == 0 || !o.IsList && len(o.Values) != 1 || !o.IsList && o.Values[0] == "" {
					t.Fatalf("bad option %+v", o)
				}
			}
		}
		roundTrip(t, file)
	})
}
