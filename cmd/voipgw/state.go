package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/voipgw/voipgw/sipfix"
	"github.com/voipgw/voipgw/vlan"
)

// record is what voipgw created, kept on disk so `down` removes exactly that and
// nothing else. It lives under /run (tmpfs): after a reboot nothing voipgw made exists.
type record struct {
	Table      string     `json:"table"`
	ConfigHash string     `json:"config_hash"`
	ConfigPath string     `json:"config_path"`
	AppliedAt  time.Time  `json:"applied_at"`
	VLAN       vlan.State `json:"vlan"`
	// SIP is what apply changed outside voipgw's table to switch the SIP ALG off
	// (foreign rules, firewall4 options, unloaded modules); down restores it.
	SIP *sipfix.State `json:"sip,omitempty"`
}

func recordPath(dir string) string { return filepath.Join(dir, "state.json") }

func loadRecord(dir string) (*record, error) {
	b, err := os.ReadFile(recordPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt: %w", recordPath(dir), err)
	}
	return &r, nil
}

// saveRecord writes atomically (temp file + rename), so a crash never leaves half a record.
func saveRecord(dir string, r *record) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), recordPath(dir)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func removeRecord(dir string) error {
	err := os.Remove(recordPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
