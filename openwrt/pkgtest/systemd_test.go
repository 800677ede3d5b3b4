package pkgtest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const unitPath = "dist/systemd/voipgw.service"

// parseUnit returns section.key → values (a key may repeat).
func parseUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("unit line %q", l)
			}
			m[section+"."+k] = append(m[section+"."+k], v)
		}
	}
	return m
}

// What `voipgw run` relies on from its unit (cmd/voipgw's TestRunNotifiesSystemd
// drives the same protocol through a NOTIFY_SOCKET).
func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, filepath.Join(root, unitPath))
	want := map[string]string{
		"Service.Type":                     "notify", // READY=1 after the table is installed
		"Service.NotifyAccess":             "main",
		"Service.ExecStart":                "/usr/sbin/voipgw run",
		"Service.ExecReload":               "/bin/kill -HUP $MAINPID", // SIGHUP re-applies
		"Service.Restart":                  "on-failure",
		"Service.RuntimeDirectory":         "voipgw",
		"Service.RuntimeDirectoryPreserve": "yes", // the record `voipgw down` needs outlives a restart
		"Service.Environment":              "VOIPGW_STATE_DIR=/run/voipgw",
		"Install.WantedBy":                 "multi-user.target",
	}
	for k, v := range want {
		if got := u[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	wd := u["Service.WatchdogSec"]
	if len(wd) != 1 {
		t.Fatalf("WatchdogSec = %q", wd)
	}
	d, err := time.ParseDuration(wd[0])
	if err != nil || d < 10*time.Second {
		t.Errorf("WatchdogSec = %q: want a duration of at least 10s (voipgw pings at half of it)", wd[0])
	}
	if v := u["Service.ProtectKernelTunables"]; len(v) != 0 && v[0] == "yes" {
		t.Errorf("ProtectKernelTunables=yes makes /proc/sys read-only; voipgw sets forwarding sysctls")
	}
}

// systemd's own parser accepts the unit without a warning.
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze is not installed")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipping: go is not installed")
	}
	dir := t.TempDir()
	// verify checks that ExecStart's binary exists: point it at a real build.
	bin := filepath.Join(dir, "voipgw")
	build := exec.Command("go", "build", "-o", bin, "./cmd/voipgw")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(root, unitPath))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "voipgw.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(unit), "/usr/sbin/voipgw", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
