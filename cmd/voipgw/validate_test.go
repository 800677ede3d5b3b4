package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	example, err := os.ReadFile("../../openwrt/voipgw.config")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		config    string
		valid     bool
		errText   string // the CLI's message, whole
		section   string
		option    string
		warnCount int
	}{
		{name: "the shipped example", config: string(example), valid: true},
		{name: "a VLAN id out of range", config: strings.Replace(string(example), "option vid '20'", "option vid '5000'", 1),
			errText: "voipgw.voice.vid='5000': not a whole number from 1 to 4094", section: "voice", option: "vid"},
		{name: "an anonymous section is named as uci show names it", config: string(example) + "\nconfig allow\n\tlist dest 'pbx.example.net'\n\tlist port 'udp/99999'\n",
			section: "@allow[1]", option: "port"},
		{name: "an unknown option is a warning", config: strings.Replace(string(example), "option icmp_rate '10'", "option icmp_rate '10'\n\toption colour 'blue'", 1),
			valid: true, warnCount: 1},
		{name: "a syntax error names the line", config: "config voipgw 'main\n", errText: "<stdin>:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := validateUCI("<stdin>", strings.NewReader(tc.config))
			if res.Valid != tc.valid {
				t.Fatalf("valid %v, want %v: %+v", res.Valid, tc.valid, res)
			}
			if len(res.Warnings) != tc.warnCount {
				t.Errorf("warnings %+v, want %d", res.Warnings, tc.warnCount)
			}
			if tc.valid {
				return
			}
			if len(res.Errors) != 1 {
				t.Fatalf("errors %+v, want one", res.Errors)
			}
			e := res.Errors[0]
			if tc.errText != "" && !strings.HasPrefix(e.Text, tc.errText) {
				t.Errorf("text %q, want %q", e.Text, tc.errText)
			}
			if e.Section != tc.section || e.Option != tc.option {
				t.Errorf("section %q option %q, want %q %q", e.Section, e.Option, tc.section, tc.option)
			}
		})
	}
}

// The command's JSON and the apply error are the same text.
func TestValidateCommandMatchesApply(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "voipgw")
	example, _ := os.ReadFile("../../openwrt/voipgw.config")
	os.WriteFile(cfg, bytes.Replace(example, []byte("option vid '20'"), []byte("option vid '0'"), 1), 0o644)
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "--json", "--config", cfg}, &out, &errOut); code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	var res validateResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	out.Reset()
	errOut.Reset()
	run([]string{"render", "--no-resolve", "--config", cfg}, &out, &errOut)
	if len(res.Errors) != 1 || !strings.Contains(errOut.String(), res.Errors[0].Text) {
		t.Errorf("validate says %+v; render (as apply) says %q", res.Errors, errOut.String())
	}
}
