package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDaemonLogSplitsByLevel(t *testing.T) {
	var out, errb bytes.Buffer
	log := newLogger(&out, &errb, true).With("component", "x")
	log.Info("applied", "config", "abc")
	log.Warn("allowlist entry not in the table")
	log.Error("re-apply failed")
	if got := out.String(); !strings.Contains(got, `msg=applied`) || strings.Contains(got, "re-apply") || strings.Contains(got, "time=") {
		t.Errorf("stdout = %q, want only the info line, without time", got)
	}
	if got := errb.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "level=ERROR") || strings.Contains(got, "msg=applied") || !strings.Contains(got, "component=x") {
		t.Errorf("stderr = %q, want the warn and error lines with their attributes", got)
	}
	out.Reset()
	errb.Reset()
	newLogger(&out, &errb, false).Info("cli")
	if out.Len() != 0 || !strings.Contains(errb.String(), "msg=cli") {
		t.Errorf("CLI logging must go to stderr only (stdout carries command output)")
	}
}
