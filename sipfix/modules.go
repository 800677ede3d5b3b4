package sipfix

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The SIP ALG modules, in unload order (nf_nat_sip uses nf_conntrack_sip).
var sipModules = []string{"nf_nat_sip", "nf_conntrack_sip"}

// Module is the state of one SIP ALG module.
type Module struct {
	Name     string `json:"name"`
	State    string `json:"state"` // "loaded", "built-in", "absent"
	RefCount int    `json:"refcount,omitempty"`
}

func (m Module) String() string {
	if m.State == "loaded" {
		return fmt.Sprintf("%s loaded (used %d)", m.Name, m.RefCount)
	}
	return m.Name + " " + m.State
}

// procModules and sysModule are variables for tests.
var (
	procModules = "/proc/modules"
	sysModule   = "/sys/module"
)

// ReadModules reads /proc/modules; a module that is not listed but has a
// /sys/module entry is built in (it cannot be unloaded).
func ReadModules() ([]Module, error) {
	loaded := map[string]int{}
	f, err := os.Open(procModules)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if f != nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 3 {
				n, _ := strconv.Atoi(fields[2])
				loaded[fields[0]] = n
			}
		}
	}
	var out []Module
	for _, name := range sipModules {
		m := Module{Name: name, State: "absent"}
		if n, ok := loaded[name]; ok {
			m.State, m.RefCount = "loaded", n
		} else if _, err := os.Stat(sysModule + "/" + name); err == nil {
			m.State = "built-in"
		}
		out = append(out, m)
	}
	return out, nil
}

// UnloadUnused unloads the SIP ALG modules that are loaded and used by nothing (a
// ct helper object or a conntrack entry holds a reference). Never forced.
func UnloadUnused(log *slog.Logger) ([]string, error) {
	var done []string
	for _, name := range sipModules {
		mods, err := ReadModules()
		if err != nil {
			return done, err
		}
		for _, m := range mods {
			if m.Name != name || m.State != "loaded" || m.RefCount != 0 {
				continue
			}
			if err := unix.DeleteModule(name, unix.O_NONBLOCK); err != nil {
				return done, fmt.Errorf("unload %s: %w", name, err)
			}
			log.Info("sip: unloaded unused module", "module", name)
			done = append(done, name)
		}
	}
	return done, nil
}

// LoadModules loads again what UnloadUnused unloaded (modprobe; on OpenWrt the
// ubox kmodloader answers to that name).
func LoadModules(log *slog.Logger, names []string) error {
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		out, err := exec.Command("modprobe", names[i]).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("modprobe %s: %w: %s", names[i], err, strings.TrimSpace(string(out))))
			continue
		}
		log.Info("sip: loaded module again", "module", names[i])
	}
	return errors.Join(errs...)
}
