package firewall

import (
	"encoding/binary"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/nfhold"
)

// genID is the kernel's nf_tables generation: every committed transaction
// increments it, so an unchanged one proves that nothing was committed.
func genID(t *testing.T, ns *lab.NS) uint32 {
	t.Helper()
	var id uint32
	err := ns.Do(func() error {
		d, err := openDumper()
		if err != nil {
			return err
		}
		defer d.close()
		return d.request(unix.NFT_MSG_GETGEN, unix.AF_UNSPEC, unix.NLM_F_ACK, nil, func(a []byte) error {
			if v := attrOf(a, unix.NFTA_GEN_ID); len(v) == 4 {
				id = binary.BigEndian.Uint32(v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var handleRe = regexp.MustCompile(`# handle (\d+)`)

// ruleHandles lists, per chain, the handles of its rules (`nft -a list`).
func ruleHandles(t *testing.T, ns *lab.NS) map[string][]string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-a", "list", "table", "inet", "voipgw").CombinedOutput()
	if err != nil {
		t.Fatalf("nft -a list: %v\n%s", err, out)
	}
	hs := map[string][]string{}
	chain := ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "chain":
			chain = f[1]
		case chain != "" && len(f) > 0 && f[0] == "}":
			chain = ""
		case chain != "" && !strings.HasPrefix(strings.TrimSpace(l), "type "):
			if m := handleRe.FindStringSubmatch(l); m != nil {
				hs[chain] = append(hs[chain], m[1])
			}
		}
	}
	return hs
}

func mustUpdate(t *testing.T, ns *lab.NS, spec Spec) (*Table, Changes) {
	t.Helper()
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	var ch Changes
	if err := ns.Do(func() error { ch, err = Update(tbl); return err }); err != nil {
		t.Fatal(err)
	}
	return tbl, ch
}

// A re-apply sends only what changed, and the kernel then lists exactly what
// Render prints for the new spec; a structure change replaces the table.
func TestUpdateSendsOnlyChanges(t *testing.T) {
	requireNft(t)
	extra := allowsFor("203.0.113.20/32", "udp/5004", "udp/9000")
	// The chains whose rules are to be replaced are those whose rules print
	// differently in the two specs' renders (the update compares fingerprints).
	cases := []struct {
		name    string
		change  func(s *Spec)
		replace bool
		elems   bool // elements added or deleted
	}{
		{name: "unchanged", change: func(*Spec) {}},
		{name: "exact entries added", change: func(s *Spec) { s.Allow = append(slices.Clone(s.Allow), extra...) }, elems: true},
		{name: "range narrowed (pipapo and rbtree sets)", change: func(s *Spec) {
			for i, a := range s.Allow {
				if a.Prefix.String() == "198.51.100.128/25" {
					s.Allow[i].Prefix = netip.MustParsePrefix("198.51.100.192/26")
				}
			}
		}, elems: true},
		{name: "LAN device added", change: func(s *Spec) { s.LAN = []string{"lan0", "lan1"} }, elems: true},
		{name: "config hash (forward's comment)", change: func(s *Spec) { s.ConfigHash = "fedcba9876543210" }},
		{name: "ICMP rate (a rule)", change: func(s *Spec) { s.ICMPRate = 20 }},
		{name: "entries and a rule", change: func(s *Spec) {
			s.Allow = append(slices.Clone(s.Allow), extra...)
			s.WAN = "wan1"
		}, elems: true},
		{name: "scan timeout (a set's attribute)", change: func(s *Spec) { s.Scan.Timeout = 2 * time.Hour }, replace: true},
		{name: "scan off (sets and chains removed)", change: func(s *Spec) { s.Scan.Enabled = false }, replace: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := lab.TestNS(t, "fwupd")
			base := dnsLabSpec()
			if _, ch := mustUpdate(t, ns, base); !ch.Replaced {
				t.Fatalf("first apply: %v, want a new table", ch)
			}
			before, gen := ruleHandles(t, ns), genID(t, ns)
			spec := dnsLabSpec()
			c.change(&spec)
			tbl, ch := mustUpdate(t, ns, spec)
			var chains []string
			if !c.replace {
				chains = changedChains(t, base, spec)
			}
			if ch.Replaced != c.replace || (ch.ElemsAdded+ch.ElemsDeleted > 0) != c.elems || !sameNames(ch.ChainsReplaced, chains) {
				t.Errorf("changes: %v; want replace %v, elements %v, chains %v", ch, c.replace, c.elems, chains)
			}
			got, want := canonical(nftList(t, ns, "voipgw")), canonical(tbl.Render())
			if d := diffLines(want, got); d != "" {
				t.Errorf("kernel listing differs from render (- render, + kernel):\n%s", d)
			}
			after, gen2 := ruleHandles(t, ns), genID(t, ns)
			if ch.None() != (gen2 == gen) {
				t.Errorf("changes %v but generation %d -> %d", ch, gen, gen2)
			}
			if c.replace {
				return
			}
			// Rules of chains not replaced are the same rules (same handles).
			for chain, hs := range before {
				if !slices.Contains(chains, chain) && !slices.Equal(hs, after[chain]) {
					t.Errorf("chain %s: rule handles %v -> %v, but its rules did not change", chain, hs, after[chain])
				}
			}
		})
	}
}

// changedChains lists the chains whose rules render differently for the two specs.
func changedChains(t *testing.T, a, b Spec) []string {
	t.Helper()
	ta, err := Build(a)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Build(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, cb := range tb.Chains {
		ca := ta.chain(cb.Name)
		if ca == nil || !slices.EqualFunc(ca.Rules, cb.Rules, func(x, y Rule) bool { return x.Text() == y.Text() }) {
			out = append(out, cb.Name)
		}
	}
	return out
}

func sameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Elements of Keep sets stay through an update untouched (their timeout is not
// renewed); elements of other sets that the table does not have are deleted.
func TestUpdateKeepsLearnedState(t *testing.T) {
	requireNft(t)
	ns := lab.TestNS(t, "fwkeep")
	mustUpdate(t, ns, dnsLabSpec())
	nft := func(cmd string) {
		t.Helper()
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", cmd).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v\n%s", cmd, err, out)
		}
	}
	nft("add element inet voipgw scanners4 { 203.0.113.99 timeout 10m }")
	nft("add element inet voipgw allow4 { 203.0.113.98 . udp . 7 }") // not in the spec
	nft("add element inet voipgw learned4 { 203.0.113.97 . tcp . 443 timeout 10m comment \"a.webex.example\" }")
	nft("add element inet voipgw learned4 { 203.0.113.96 . tcp . 443 timeout 10m comment \"not.allowlisted.example\" }")
	time.Sleep(1100 * time.Millisecond) // so a renewed timeout would show

	tbl, ch := mustUpdate(t, ns, dnsLabSpec())
	if ch.Replaced || ch.ElemsAdded != 0 || ch.ElemsDeleted != 2 || len(ch.ChainsReplaced) != 0 {
		t.Errorf("changes: %v, want the stray allow4 element and the learned element no rule allows deleted", ch)
	}
	out := nftList(t, ns, "voipgw")
	for _, want := range []string{"203.0.113.99 timeout 10m expires 9m5", "203.0.113.97 . tcp . 443 timeout 10m expires 9m5"} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q (kept, timeout not renewed):\n%s", want, out)
		}
	}
	for _, gone := range []string{"203.0.113.98", "203.0.113.96"} {
		if strings.Contains(out, gone) {
			t.Errorf("listing still has %s:\n%s", gone, out)
		}
	}
	// Apart from the kept elements, the table is the render.
	kept := regexp.MustCompile(`\s*elements = \{ 203\.0\.113\.(99|97)[^}]*\}`)
	got, want := canonical(kept.ReplaceAllString(out, "")), canonical(tbl.Render())
	if d := diffLines(want, got); d != "" {
		t.Errorf("kernel listing differs from render (- render, + kernel):\n%s", d)
	}
}

// Rules carry their fingerprint in user data that nft does not show; a rule
// without one (replaced by nft, or written by an older voipgw) makes its chain's
// rules be replaced, and only that chain's.
func TestUpdateReplacesRulesWithoutFingerprint(t *testing.T) {
	requireNft(t)
	ns := lab.TestNS(t, "fwfp")
	tbl, _ := mustUpdate(t, ns, dnsLabSpec())
	first := ruleHandles(t, ns)["voip_in"][0]
	text := tbl.chain("voip_in").Rules[0].Text()
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "replace rule inet voipgw voip_in handle "+first+" "+text).CombinedOutput(); err != nil {
		t.Fatalf("nft replace rule: %v\n%s", err, out)
	}
	if _, ch := mustUpdate(t, ns, dnsLabSpec()); ch.Replaced || ch.ElemsAdded+ch.ElemsDeleted != 0 || !slices.Equal(ch.ChainsReplaced, []string{"voip_in"}) {
		t.Errorf("after nft replaced a rule: %v, want the rules of voip_in replaced and nothing else", ch)
	}
	if _, ch := mustUpdate(t, ns, dnsLabSpec()); !ch.None() {
		t.Errorf("second update: %v, want unchanged", ch)
	}
}

// With a holder, the update is committed when UpdateHolding returns (the sockets
// stay open until Release, which only frees them): one entry changed is one
// element deleted and one added, the forward chain's rules (config hash) replaced
// and every other rule left as it was.
func TestUpdateHoldingCommitsBeforeRelease(t *testing.T) {
	requireNft(t)
	ns := lab.TestNS(t, "fwhold")
	base := dnsLabSpec()
	base.Allow = append(slices.Clone(base.Allow), allowsFor("203.0.113.11/32", "udp/30001")...)
	if _, ch := mustUpdate(t, ns, base); !ch.Replaced {
		t.Fatalf("first apply: %v, want a new table", ch)
	}
	before := ruleHandles(t, ns)
	spec := dnsLabSpec()
	spec.Allow = append(slices.Clone(spec.Allow), allowsFor("203.0.113.11/32", "udp/30003")...)
	spec.ConfigHash = "fedcba9876543210"
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	h := &nfhold.Holder{}
	var ch Changes
	if err := ns.Do(func() error { ch, err = UpdateHolding(tbl, h); return err }); err != nil {
		t.Fatal(err)
	}
	if ch.Replaced || ch.ElemsAdded != 1 || ch.ElemsDeleted != 1 || !sameNames(ch.ChainsReplaced, []string{"forward"}) {
		t.Errorf("changes %v; want 1 element added, 1 deleted, rules of forward replaced", ch)
	}
	// Listed before Release: the kernel has the new table already.
	if d := diffLines(canonical(tbl.Render()), canonical(nftList(t, ns, "voipgw"))); d != "" {
		t.Errorf("before Release, kernel listing differs from render (- render, + kernel):\n%s", d)
	}
	after := ruleHandles(t, ns)
	for chain, hs := range before {
		if chain != "forward" && !slices.Equal(hs, after[chain]) {
			t.Errorf("chain %s: rule handles %v -> %v, but its rules did not change", chain, hs, after[chain])
		}
	}
	if err := h.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// Only the scanner sets (Keep, no Carry, no elements of their own, a default
// timeout) are left unread by the diff; every other set is compared.
func TestKeepsAsIsOnlyScanners(t *testing.T) {
	tbl, err := Build(dnsLabSpec())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range tbl.Sets {
		if keepsAsIs(s) {
			got = append(got, s.Name)
		}
	}
	if want := []string{SetScanners4, SetScanners6}; !sameNames(got, want) {
		t.Errorf("sets not read by the diff: %v, want %v", got, want)
	}
	s := &Set{Name: "x", Keep: true, Timeout: time.Minute}
	for name, change := range map[string]func(){
		"with Carry":        func() { s.Carry = func(e []nftables.SetElement) []nftables.SetElement { return e } },
		"with elements":     func() { s.Elems = []Elem{{Key: []byte{192, 0, 2, 1}}} },
		"without timeout":   func() { s.Timeout = 0 },
		"not Keep":          func() { s.Keep = false },
		"with packed elems": func() { s.Packed = []byte{192, 0, 2, 1} },
	} {
		*s = Set{Name: "x", Keep: true, Timeout: time.Minute}
		change()
		if keepsAsIs(s) {
			t.Errorf("a set %s would not be read", name)
		}
	}
}
