package config

import (
	"regexp"
	"strings"
	"testing"
)

// The hand-written checks accept exactly what the regular expressions they
// replace accepted.
func TestIdentChecksMatchTheirRegexps(t *testing.T) {
	nft := regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,30}$`)
	ifn := regexp.MustCompile(`^[a-zA-Z0-9_.@-]{1,15}$`)
	cases := []string{"", "a", "voipgw", "voip_gw2", "2voip", "_x", "a-b", "a.b", "eth0.100", "br-lan", "wan@eth0",
		"a b", "é", "x\x00", strings.Repeat("a", 15), strings.Repeat("a", 16), strings.Repeat("a", 31), strings.Repeat("a", 32), "A_9", "-", "..", "."}
	for _, c := range cases {
		if got, want := nftIdent(c), nft.MatchString(c); got != want {
			t.Errorf("nftIdent(%q) = %v, regexp %v", c, got, want)
		}
		if got, want := ifnameOK(c), ifn.MatchString(c); got != want {
			t.Errorf("ifnameOK(%q) = %v, regexp %v", c, got, want)
		}
	}
}
