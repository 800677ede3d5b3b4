package sipfix_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/sipfix"
)

// fw4Like is what OpenWrt's firewall4 renders for a zone with automatic helpers
// (tests/02_zones/07_helpers of firewall4), for a zone on voip0, plus a LAN rule.
const fw4Like = `table inet fw4 {
	ct helper sip {
		type "sip" protocol udp;
	}
	ct helper tftp {
		type "tftp" protocol udp;
	}
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		iifname "voip0" jump helper_voice comment "!fw4: Handle voice IPv4/IPv6 helper assignment"
		iifname "lan0" jump helper_lan comment "!fw4: Handle lan IPv4/IPv6 helper assignment"
	}
	chain helper_voice {
		meta l4proto udp udp dport 69 ct helper set "tftp" comment "!fw4: TFTP connection tracking"
		meta l4proto udp udp dport 5060 ct helper set "sip" comment "!fw4: SIP VoIP connection tracking"
	}
	chain helper_lan {
		meta l4proto udp udp dport 5060 ct helper set "sip" comment "!fw4: SIP VoIP connection tracking"
	}
	chain post {
		type filter hook postrouting priority filter; policy accept;
		udp dport 5080 ct helper set "sip"
		udp dport 9 counter
	}
}
`

func nft(t *testing.T, ns *lab.NS, stdin string, args ...string) string {
	t.Helper()
	var out string
	err := ns.Do(func() error {
		cmd := exec.Command("nft", args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		b, err := cmd.CombinedOutput()
		out = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return out
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Apply narrows the zone's sip rules (in place, same handles), deletes the one it
// cannot narrow, leaves everything else; restore brings back the exact listing.
func TestNeutraliseAndRestoreRules(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: the nft command is not installed (used here only to load and list the foreign table)")
	}
	ns := lab.TestNS(t, "sipfix")
	nft(t, ns, fw4Like, "-f", "-")
	before := nft(t, ns, "", "-a", "list", "ruleset")

	var changes []sipfix.RuleChange
	err := ns.Do(func() (err error) {
		changes, err = sipfix.NeutraliseRules(context.Background(), discard(), "voip0", "voipgw", nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after := strip(nft(t, ns, "", "-a", "list", "ruleset"))
	for _, want := range []string{
		"chain helper_voice {\n\t\tudp dport 69 ct helper set \"tftp\" comment \"!fw4: TFTP connection tracking\"\n\t\t" +
			"iifname != \"voip0\" udp dport 5060 ct helper set \"sip\" comment \"!fw4: SIP VoIP connection tracking\"\n",
		"chain helper_lan {\n\t\tiifname != \"voip0\" udp dport 5060 ct helper set \"sip\"",
		"udp dport 9 counter",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("after neutralise, lacks %q:\n%s", want, after)
		}
	}
	if strings.Contains(after, `dport 5080 ct helper set "sip"`) {
		t.Errorf("the postrouting rule (cannot be narrowed) is still there:\n%s", after)
	}
	if len(changes) != 3 {
		t.Fatalf("changes = %+v, want 3", changes)
	}
	// Narrowed in place: the rule keeps its handle (and so its position).
	withHandles := nft(t, ns, "", "-a", "list", "ruleset")
	for _, c := range changes {
		if c.Action != sipfix.ActionNarrow {
			continue
		}
		if want := fmt.Sprintf("iifname != \"voip0\" udp dport 5060 ct helper set \"sip\" comment \"!fw4: SIP VoIP connection tracking\" # handle %d\n", c.Handle); !strings.Contains(withHandles, want) {
			t.Errorf("narrowed rule lost its handle %d:\n%s", c.Handle, withHandles)
		}
	}

	// A second apply keeps the record and changes nothing.
	again := changes
	if err := ns.Do(func() (err error) {
		again, err = sipfix.NeutraliseRules(context.Background(), discard(), "voip0", "voipgw", changes)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(again) != 3 || strip(nft(t, ns, "", "-a", "list", "ruleset")) != after {
		t.Errorf("second apply: %d changes, ruleset changed: %v", len(again), strip(nft(t, ns, "", "-a", "list", "ruleset")) != after)
	}

	if err := ns.Do(func() error { return sipfix.RestoreRules(context.Background(), discard(), again) }); err != nil {
		t.Fatal(err)
	}
	restored := nft(t, ns, "", "-a", "list", "ruleset")
	// Handles of re-inserted rules are new; compare without them.
	if strip(restored) != strip(before) {
		t.Errorf("restore did not bring back the ruleset:\nbefore:\n%s\nafter restore:\n%s", before, restored)
	}
}

func strip(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, " # handle"); i >= 0 {
			l = l[:i]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
