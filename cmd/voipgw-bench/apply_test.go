package main

import "testing"

func TestStepsOf(t *testing.T) {
	out := []byte("time=2026-12-03T13:00:00Z level=INFO msg=\"table installed\" changes=\"1 elements added\"\n" +
		"time=2026-12-03T13:00:00Z level=INFO msg=\"apply done\" took=12.50ms plan=3.25ms network=0.75ms table=5.00ms sip_alg=0.50ms record=0.40ms release=2.60ms\n" +
		"applied config 1234: interface voip0, table inet voipgw\n")
	got := stepsOf(out)
	want := map[string]float64{"took": 12.5, "plan": 3.25, "network": 0.75, "table": 5, "sip_alg": 0.5, "record": 0.4, "release": 2.6}
	if len(got) != len(want) {
		t.Fatalf("stepsOf = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if s := stepsOf([]byte("applied config 1234\n")); s != nil {
		t.Errorf("without the line: %v, want nil", s)
	}
}
