package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// diagnose --json always prints one JSON object, also for unusable arguments:
// rpcd passes the plugin's stdout on only when it is one.
func TestDiagnoseJSONOnBadArguments(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"no check named", []string{"diagnose", "--json"}, exitUsage},
		{"a source that is no address", []string{"diagnose", "--json", "--stun", "192.0.2.1", "--source", "nowhere"}, exitUsage},
		{"--source gateway without a config", []string{"diagnose", "--json", "--stun", "192.0.2.1", "--source", "gateway", "--config", "/nonexistent"}, exitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tc.args, &out, &errOut); code != tc.code {
				t.Errorf("exit %d, want %d (%s)", code, tc.code, errOut.String())
			}
			var rep diagnoseReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Error == "" || rep.OK {
				t.Errorf("stdout %q: %v, want a JSON object with error", out.String(), err)
			}
		})
	}
}
