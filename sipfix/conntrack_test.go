package sipfix

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeKernel points the module and conntrack-count paths at files of a test.
func fakeKernel(t *testing.T, count string, procMods *string, sysMods []string) {
	t.Helper()
	dir := t.TempDir()
	oldCount, oldProc, oldSys := ctCount, procModules, sysModule
	t.Cleanup(func() { ctCount, procModules, sysModule = oldCount, oldProc, oldSys })
	ctCount = filepath.Join(dir, "nf_conntrack_count")
	if count != "" {
		if err := os.WriteFile(ctCount, []byte(count+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	procModules = filepath.Join(dir, "modules")
	if procMods != nil {
		if err := os.WriteFile(procModules, []byte(*procMods), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sysModule = filepath.Join(dir, "sys")
	for _, m := range sysMods {
		if err := os.MkdirAll(filepath.Join(sysModule, m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNoHelperFlows(t *testing.T) {
	str := func(s string) *string { return &s }
	sipLoaded := "nf_conntrack_sip 45056 0 - Live 0x0\nnf_conntrack 180224 5 nf_conntrack_sip, Live 0x0\n"
	cthelper := "nfnetlink_cthelper 16384 0 - Live 0x0\n"
	other := "nf_conntrack 180224 5 - Live 0x0\n"
	cases := []struct {
		name     string
		count    string // "" : no such file (conntrack not loaded)
		procMods *string
		sysMods  []string
		skip     bool
	}{
		{name: "no entries, sip loaded", count: "0", procMods: str(sipLoaded), sysMods: []string{"nf_conntrack_sip"}, skip: true},
		{name: "entries, sip loaded", count: "12", procMods: str(sipLoaded), sysMods: []string{"nf_conntrack_sip"}},
		{name: "entries, sip built in", count: "12", sysMods: []string{"nf_conntrack_sip"}},
		{name: "entries, sip not loaded", count: "12", procMods: str(other), skip: true},
		{name: "entries, no loadable modules, sip not built in", count: "12", skip: true},
		{name: "entries, sip not loaded, user-space helpers possible", count: "12", procMods: str(other + cthelper)},
		{name: "entries, sip not loaded, cthelper built in", count: "12", procMods: str(other), sysMods: []string{"nfnetlink_cthelper"}},
		{name: "count unreadable, sip loaded", procMods: str(sipLoaded), sysMods: []string{"nf_conntrack_sip"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fakeKernel(t, c.count, c.procMods, c.sysMods)
			why := noHelperFlows()
			if (why != "") != c.skip {
				t.Errorf("noHelperFlows() = %q, want skip %v", why, c.skip)
			}
		})
	}
	t.Run("modules unreadable", func(t *testing.T) {
		fakeKernel(t, "12", nil, nil)
		if err := os.Mkdir(procModules, 0o755); err != nil { // reading a directory fails (not ENOENT)
			t.Fatal(err)
		}
		if why := noHelperFlows(); why != "" {
			t.Errorf("noHelperFlows() = %q with /proc/modules unreadable, want a dump", why)
		}
	})
}
