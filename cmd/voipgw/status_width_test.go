package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// `voipgw status` of a gateway with phones, mappings, learned addresses and a
// scanner fits an 80-column terminal.
func TestStatusFitsIn80Columns(t *testing.T) {
	_, gw := luciLab(t)
	out, err := gw.run("status")
	if err != nil {
		t.Errorf("status: %v", err)
	}
	t.Logf("status:\n%s", out)
	for i, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("line %d has %d columns: %q", i+1, n, line)
		}
	}
}

func TestFoldLines(t *testing.T) {
	rule := `  rule       inet fw4 chain helper_voice handle 12 (ct helper set "sip"): neutralised (iifname != VoIP interface)`
	for _, tc := range []struct {
		name, in, want string
	}{
		{"short lines stay", "  mappings   2 (inbound entries 2, conflicts 0)\nOK\n", "  mappings   2 (inbound entries 2, conflicts 0)\nOK\n"},
		{"after the colon, value column", rule + "\n",
			"  rule       inet fw4 chain helper_voice handle 12 (ct helper set \"sip\"):\n             neutralised (iifname != VoIP interface)\n"},
		{"at a space, four more than the line", "    " + strings.TrimSpace(strings.Repeat("word ", 20)) + "\n",
			"    " + strings.TrimSpace(strings.Repeat("word ", 15)) + "\n        " + strings.TrimSpace(strings.Repeat("word ", 5)) + "\n"},
		{"after a comma", "      " + strings.Repeat("udp/5060,", 10) + "\n",
			"      " + strings.Repeat("udp/5060,", 8) + "\n          udp/5060,udp/5060,\n"},
		{"one long word stays", strings.Repeat("x", 90), strings.Repeat("x", 90)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := foldLines(tc.in, 80)
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			for _, l := range strings.Split(got, "\n") {
				if n := utf8.RuneCountInString(l); n > 80 && !strings.HasPrefix(l, "xxx") {
					t.Errorf("%d columns: %q", n, l)
				}
			}
		})
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{"t54w": "t54w", "a\x1b[2Jb": "a?[2Jb", "Gigaset N670": "Gigaset N670", "x\ny\tz": "x?y?z"} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}
