package firewall

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/voipgw/voipgw/lab"
)

func requireNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: the nft command is not installed (apt-get install nftables); the netlink tests still run")
	}
}

func nftList(t *testing.T, ns *lab.NS, table string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "list", "table", "inet", table).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	return string(out)
}

var (
	counterValues = regexp.MustCompile(`\n\s*packets \d+ bytes \d+`)
	elementsBlock = regexp.MustCompile(`(?s)elements = \{(.*?)\}`)
	expiresPart   = regexp.MustCompile(` (timeout|expires) [0-9dhms]+`)
)

// canonical makes two listings comparable: no comment lines or counter values,
// whitespace folded, and set elements sorted (the kernel orders them its own way).
func canonical(s string) []string {
	s = counterValues.ReplaceAllString(s, "")
	s = elementsBlock.ReplaceAllStringFunc(s, func(m string) string {
		inner := elementsBlock.FindStringSubmatch(m)[1]
		var elems []string
		for _, e := range strings.Split(inner, ",") {
			e = expiresPart.ReplaceAllString(strings.Join(strings.Fields(e), " "), "")
			elems = append(elems, e)
		}
		slices.Sort(elems)
		return "elements = { " + strings.Join(elems, ", ") + " }"
	})
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.Join(strings.Fields(l), " ")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

func diffLines(a, b []string) string {
	var d strings.Builder
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			d.WriteString("- " + x + "\n+ " + y + "\n")
		}
	}
	return d.String()
}

// The table installed through netlink, listed back by nft, is exactly what Render
// printed: the two encodings of every rule agree.
func TestApplyListsBackAsRendered(t *testing.T) {
	requireNft(t)
	ns := lab.TestNS(t, "fw")
	tbl, err := Build(labSpec())
	if err != nil {
		t.Fatal(err)
	}
	applyListsBack(t, ns, tbl)
}

// applyListsBack installs tbl in ns through netlink and checks that nft lists it
// exactly as Render printed it.
func applyListsBack(t *testing.T, ns *lab.NS, tbl *Table) {
	t.Helper()
	if err := ns.Do(func() error { return Apply(tbl) }); err != nil {
		t.Fatal(err)
	}
	got, want := canonical(nftList(t, ns, tbl.Name)), canonical(tbl.Render())
	if d := diffLines(want, got); d != "" {
		t.Errorf("kernel listing differs from render (- render, + kernel):\n%s", d)
	}
}

// Render is valid nft input, and nft loads it to the same table.
func TestRenderLoadsWithNft(t *testing.T) {
	checkRenderLoads(t, "fwnft", labSpec())
}

// checkRenderLoads loads Build(spec).Render() with `nft -f` into a fresh namespace
// and compares the listing with the render.
func checkRenderLoads(t *testing.T, nsName string, spec Spec) {
	t.Helper()
	requireNft(t)
	ns := lab.TestNS(t, nsName)
	tbl, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(tbl.Loadable())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f render: %v\n%s", err, out)
	}
	got, want := canonical(nftList(t, ns, "voipgw")), canonical(tbl.Loadable())
	if d := diffLines(want, got); d != "" {
		t.Errorf("nft -f of the render lists differently (- render, + kernel):\n%s", d)
	}
}
