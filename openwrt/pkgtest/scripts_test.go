package pkgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// shells are the POSIX shells the scripts are run with: busybox ash is OpenWrt's
// /bin/sh, dash is Debian's. Those not installed are skipped.
func shells(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	if p, err := exec.LookPath("busybox"); err == nil {
		out = append(out, []string{p, "sh"})
	}
	if p, err := exec.LookPath("dash"); err == nil {
		out = append(out, []string{p})
	}
	if len(out) == 0 {
		t.Skip("skipping: neither busybox nor dash is installed")
	}
	return out
}

var scripts = []string{"openwrt/files/voipgw.init", "openwrt/files/voipgw.hotplug", "openwrt/files/voipgw.uci-defaults"}

func TestScriptsParse(t *testing.T) {
	for _, sh := range shells(t) {
		for _, s := range scripts {
			cmd := exec.Command(sh[0], append(sh[1:], "-n", filepath.Join(root, s))...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n %s: %v\n%s", strings.Join(sh, " "), s, err, out)
			}
		}
	}
}

// stubs is a directory of stand-ins for the OpenWrt commands the scripts call; each
// appends its arguments (and for `uci batch` its input) to the file $CALLS.
func stubs(t *testing.T, withFW4 bool) (dir, calls string) {
	t.Helper()
	dir = t.TempDir()
	calls = filepath.Join(dir, "calls")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("logger", `echo "logger $*" >>"$CALLS"`+"\n")
	write("uci", `case "$*" in
"-q get voipgw.@voipgw[0].wan") echo wan ;;
"-q get voipgw.@voipgw[0].lan") echo br-lan ;;
"-q get voipgw.@vlan[0].device") echo br-lan ;;
"-q batch") while read -r l; do echo "uci batch: $l" >>"$CALLS"; done ;;
*) echo "uci $*" >>"$CALLS" ;;
esac
`)
	if withFW4 {
		write("fw4", `echo "fw4 $*" >>"$CALLS"`+"\n")
	}
	// voipgw: fw4-zone prints $ZONE_CMDS (or fails with $ZONE_ERR on stderr).
	write("voipgw", `echo "voipgw $*" >>"$CALLS"
case "$1" in
fw4-zone)
	if [ -n "$ZONE_ERR" ]; then echo "$ZONE_ERR" >&2; exit 1; fi
	echo "level=WARN msg=\"a config warning on stderr\"" >&2
	case "$*" in *--remove*) [ -z "$REMOVE_CMDS" ] || echo "$REMOVE_CMDS" ;; *) [ -z "$ZONE_CMDS" ] || echo "$ZONE_CMDS" ;; esac ;;
esac
`)
	return dir, calls
}

func readCalls(t *testing.T, calls string) []string {
	t.Helper()
	b, err := os.ReadFile(calls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func runScript(t *testing.T, sh []string, script string, env []string) {
	t.Helper()
	// busybox sh runs its own applets (logger among them) before anything in PATH;
	// a function comes before both.
	script = `logger() { echo "logger $*" >>"$CALLS"; }` + "\n" + script
	cmd := exec.Command(sh[0], append(sh[1:], "-c", script)...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestHotplug(t *testing.T) {
	hotplug, err := filepath.Abs(filepath.Join(root, "openwrt/files/voipgw.hotplug"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    []string
		reload bool
	}{
		{"WAN up", []string{"ACTION=ifup", "INTERFACE=wan", "DEVICE=wan"}, true},
		{"LAN up on the bridge's VLAN", []string{"ACTION=ifup", "INTERFACE=lan", "DEVICE=br-lan.1"}, true},
		{"VLAN parent up", []string{"ACTION=ifup", "INTERFACE=lan", "DEVICE=br-lan"}, true},
		{"unrelated interface", []string{"ACTION=ifup", "INTERFACE=guest", "DEVICE=br-guest"}, false},
		{"down events are not ours", []string{"ACTION=ifdown", "INTERFACE=wan", "DEVICE=wan"}, false},
		{"DHCP renew with nothing new", []string{"ACTION=ifupdate", "INTERFACE=wan", "DEVICE=wan"}, false},
		{"new WAN address", []string{"ACTION=ifupdate", "INTERFACE=wan", "DEVICE=wan", "IFUPDATE_ADDRESSES=1"}, true},
		{"service disabled", []string{"ACTION=ifup", "INTERFACE=wan", "DEVICE=wan", "ENABLED=1"}, false},
		{"service not running", []string{"ACTION=ifup", "INTERFACE=wan", "DEVICE=wan", "RUNNING=1"}, false},
	}
	for _, sh := range shells(t) {
		for _, tt := range tests {
			t.Run(filepath.Base(sh[0])+"/"+tt.name, func(t *testing.T) {
				dir, calls := stubs(t, true)
				initd := filepath.Join(dir, "voipgw.init")
				os.WriteFile(initd, []byte(`#!/bin/sh
case "$1" in
enabled) exit "${ENABLED:-0}" ;;
running) exit "${RUNNING:-0}" ;;
*) echo "initd $*" >>"$CALLS" ;;
esac
`), 0o755)
				env := append([]string{"PATH=" + dir + ":" + os.Getenv("PATH"), "CALLS=" + calls, "VOIPGW_INITD=" + initd}, tt.env...)
				// hotplug-call sources each script in a subshell.
				runScript(t, sh, "( . "+hotplug+" )", env)
				got := readCalls(t, calls)
				if tt.reload {
					if !slices.Contains(got, "initd reload") {
						t.Errorf("no reload; calls %q", got)
					}
					if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "logger -t voipgw re-applying after ") }) {
						t.Errorf("no log line; calls %q", got)
					}
				} else if len(got) != 0 {
					t.Errorf("want nothing done, calls %q", got)
				}
			})
		}
	}
}

// initHarness sources the init script the way rc.common does, with procd's shell
// API recorded instead of sent to procd, and calls fn.
func initHarness(t *testing.T, sh []string, fn string, withFW4 bool, env ...string) ([]string, string) {
	t.Helper()
	initScript, err := filepath.Abs(filepath.Join(root, "openwrt/files/voipgw.init"))
	if err != nil {
		t.Fatal(err)
	}
	dir, calls := stubs(t, withFW4)
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o755)
	harness := `
extra_command() { :; }
procd_open_instance() { echo "procd_open_instance $*" >>"$CALLS"; }
procd_set_param() { echo "procd_set_param $*" >>"$CALLS"; }
procd_close_instance() { echo "procd_close_instance" >>"$CALLS"; }
procd_send_signal() { echo "procd_send_signal $*" >>"$CALLS"; }
procd_add_reload_trigger() { echo "procd_add_reload_trigger $*" >>"$CALLS"; }
stop() { echo "stop" >>"$CALLS"; }
. ` + initScript + `
PROG=voipgw
STATE=` + state + `
` + fn
	runScript(t, sh, harness, append([]string{"PATH=" + dir + ":" + os.Getenv("PATH"), "CALLS=" + calls}, env...))
	return readCalls(t, calls), state
}

func TestInitScript(t *testing.T) {
	// What voipgw fw4-zone prints (abridged), with the inbound rule's name: spaces
	// and a colon that must reach uci as one line.
	zone := "ZONE_CMDS=set firewall.voipgw_zone=zone\nset firewall.voipgw_zone.name='voipgw'\n" +
		"set firewall.voipgw_inbound.name='voipgw: UDP to the phones via full-cone mappings and pinholes'"
	for _, sh := range shells(t) {
		name := filepath.Base(sh[0])
		t.Run(name+"/start, zone in step", func(t *testing.T) {
			got, state := initHarness(t, sh, "start_service", true)
			want := []string{
				"voipgw fw4-zone --config /etc/config/voipgw",
				"procd_open_instance ",
				"procd_set_param command voipgw run --config /etc/config/voipgw --state-dir " + state,
				"procd_set_param respawn 3600 5 5",
				"procd_set_param reload_signal HUP",
				"procd_set_param term_timeout 15",
				"procd_set_param stdout 1",
				"procd_set_param stderr 1",
				"procd_close_instance",
			}
			if !slices.Equal(got, want) {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
		t.Run(name+"/start, zone changed: uci batch, commit, fw4 reload; stderr kept out of uci", func(t *testing.T) {
			got, _ := initHarness(t, sh, "start_service", true, zone)
			want := []string{
				"voipgw fw4-zone --config /etc/config/voipgw",
				"uci batch: set firewall.voipgw_zone=zone",
				"uci batch: set firewall.voipgw_zone.name='voipgw'",
				"uci batch: set firewall.voipgw_inbound.name='voipgw: UDP to the phones via full-cone mappings and pinholes'",
				"uci -q commit firewall",
				"logger -t voipgw firewall4 zone voipgw updated, reloading the firewall",
				"fw4 -q reload",
				"procd_open_instance ",
			}
			if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
				t.Errorf("calls:\n%s\nwant first:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
		t.Run(name+"/start, zone impossible: logged, service starts anyway", func(t *testing.T) {
			got, _ := initHarness(t, sh, "start_service", true, "ZONE_ERR=no firewall4 zone covers the WAN device wan")
			if !slices.Contains(got, "logger -t voipgw -p daemon.warn firewall4 zone not set up: no firewall4 zone covers the WAN device wan") ||
				!slices.Contains(got, "procd_open_instance ") || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "uci") }) {
				t.Errorf("calls:\n%s", strings.Join(got, "\n"))
			}
		})
		t.Run(name+"/start without firewall4: no zone", func(t *testing.T) {
			got, _ := initHarness(t, sh, "start_service", false, zone)
			if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "voipgw fw4-zone") || strings.HasPrefix(s, "uci") }) {
				t.Errorf("calls:\n%s", strings.Join(got, "\n"))
			}
		})
		t.Run(name+"/reload: zone, then SIGHUP", func(t *testing.T) {
			got, _ := initHarness(t, sh, "reload_service", true)
			want := []string{"voipgw fw4-zone --config /etc/config/voipgw", "procd_send_signal voipgw * HUP"}
			if !slices.Equal(got, want) {
				t.Errorf("calls %q, want %q", got, want)
			}
		})
		t.Run(name+"/triggers", func(t *testing.T) {
			got, _ := initHarness(t, sh, "service_triggers", true)
			if !slices.Equal(got, []string{"procd_add_reload_trigger voipgw"}) {
				t.Errorf("calls %q", got)
			}
		})
		t.Run(name+"/down: stop, voipgw down, zone removed, state gone", func(t *testing.T) {
			got, state := initHarness(t, sh, "down", true, "REMOVE_CMDS=delete firewall.voipgw_inbound\ndelete firewall.voipgw_wan\ndelete firewall.voipgw_zone")
			want := []string{
				"stop",
				"voipgw down --config /etc/config/voipgw --state-dir " + state,
				"voipgw fw4-zone --remove",
				"uci batch: delete firewall.voipgw_inbound",
				"uci batch: delete firewall.voipgw_wan",
				"uci batch: delete firewall.voipgw_zone",
				"uci -q commit firewall",
				"fw4 -q reload",
			}
			if !slices.Equal(got, want) {
				t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("state dir %s still there", state)
			}
		})
	}
}

func TestUCIDefaults(t *testing.T) {
	script, err := filepath.Abs(filepath.Join(root, "openwrt/files/voipgw.uci-defaults"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shells(t) {
		for _, tt := range []struct {
			name string
			env  string
			want []string
		}{
			{"zone added", "ZONE_CMDS=set firewall.voipgw_zone=zone", []string{"voipgw fw4-zone", "uci batch: set firewall.voipgw_zone=zone", "uci -q commit firewall"}},
			{"in step", "ZONE_CMDS=", []string{"voipgw fw4-zone"}},
			{"config not valid yet", "ZONE_ERR=voipgw.voice.ipaddr: required", []string{"voipgw fw4-zone", "logger -t voipgw uci-defaults: firewall4 zone not set up yet: voipgw.voice.ipaddr: required"}},
		} {
			t.Run(filepath.Base(sh[0])+"/"+tt.name, func(t *testing.T) {
				dir, calls := stubs(t, true)
				// default_postinst and /etc/init.d/boot source it in a subshell and
				// delete it when that subshell exits 0.
				runScript(t, sh, "( . "+script+" ) && echo removed >>\"$CALLS\"", []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "CALLS=" + calls, tt.env})
				want := append(tt.want, "removed")
				if got := readCalls(t, calls); !slices.Equal(got, want) {
					t.Errorf("calls %q, want %q", got, want)
				}
			})
		}
	}
}
