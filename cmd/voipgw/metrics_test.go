package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/voipgw/voipgw/dnsfwd"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/media"
	"github.com/voipgw/voipgw/vlan"
)

// parseMetrics reads exposition text with Prometheus' own parser (test-only
// dependency) and returns name → labels → value.
func parseMetrics(t *testing.T, text string) map[string]map[string]float64 {
	t.Helper()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("the official parser rejects the output: %v\n%s", err, text)
	}
	out := map[string]map[string]float64{}
	for name, f := range fams {
		out[name] = map[string]float64{}
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			default:
				t.Errorf("%s: type %s, want counter or gauge", name, f.GetType())
			}
			out[name][strings.Join(ls, ",")] = v
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	return out
}

func TestMetricsEncoding(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	r := &statusReport{
		Interface: vlan.Status{Name: "voice", Exists: true, Up: true},
		Firewall: firewall.Status{Table: "voipgw", Present: true,
			Counters: map[string]firewall.Counter{"allowed": {Packets: 12, Bytes: 3400}, "blocked_lan": {Packets: 3, Bytes: 180},
				"scanners_detected": {Packets: 1, Bytes: 60}, "nat_inbound": {Packets: 1 << 40, Bytes: 1 << 50}},
			SetSizes: map[string]int{firewall.SetAllow4: 5, firewall.SetAllow4Range: 2}},
		Scanners: []string{"203.0.113.99 (expires in 59m)"},
		Problems: []string{`a "quoted" \ problem` + "\nwith a newline"},
		Features: map[string]any{
			"nat": natReport{Filtering: "provider", Kernel: firewall.NATStatus{Present: true, Inbound: 2,
				Mappings: []firewall.Mapping{{Internal: netip.MustParseAddrPort("192.0.2.10:5060"), External: 5060, Reachable: true}, {}}}},
			"dns": dnsStatusValue{Running: true, Daemon: &dnsPublished{Stats: dnsfwd.Stats{Queries: 40, Learned: 3}},
				Learned: []learnedView{{Addr: netip.MustParseAddr("203.0.113.70")}}},
			"dhcp": []phoneView{{MAC: "a", Vendor: "yealink", Expires: now.Add(time.Hour)}, {MAC: "b", Vendor: "yealink", Expires: now.Add(time.Minute)},
				{MAC: "c", Vendor: `gig"aset`, Static: true}, {MAC: "d", Expires: now.Add(-time.Hour)}},
			"keepalive": keepaliveReport{Running: true, Daemon: &keepalivePublished{Stats: media.Stats{Tracked: 2, KeepalivesSent: 7}}},
		},
	}
	var buf bytes.Buffer
	if err := writeMetrics(&buf, statusMetrics(r, now)); err != nil {
		t.Fatal(err)
	}
	got := parseMetrics(t, buf.String())
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"voipgw_problems", "", 1},
		{"voipgw_interface_up", "", 1},
		{"voipgw_table_present", "", 1},
		{"voipgw_packets_total", "counter=allowed", 12},
		{"voipgw_packets_total", "counter=blocked_lan", 3},
		{"voipgw_packets_total", "counter=nat_inbound", 1 << 40},
		{"voipgw_bytes_total", "counter=nat_inbound", 1 << 50},
		{"voipgw_allowlist_elements", "", 7},
		{"voipgw_scanners", "", 1},
		{"voipgw_nat_mappings", "", 2},
		{"voipgw_nat_inbound_entries", "", 2},
		{"voipgw_dns_learned_addresses", "", 1},
		{"voipgw_dns_queries_total", "", 40},
		{"voipgw_dns_learned_total", "", 3},
		{"voipgw_phones", "vendor=yealink", 2},
		{"voipgw_phones", `vendor=gig"aset`, 1},
		{"voipgw_dhcp_leases_expired", "", 1},
		{"voipgw_keepalive_flows_tracked", "", 2},
		{"voipgw_keepalives_sent_total", "", 7},
	} {
		v, ok := got[c.name][c.labels]
		if !ok || v != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := got["voipgw_sip_helper_flows"]; ok {
		t.Errorf("a feature the report lacks (sip) has metrics")
	}
}

// The same families from a lab gateway with phones, mappings, learned addresses
// and a scanner, through the command (--output writes the file atomically).
func TestMetricsInLab(t *testing.T) {
	_, gw := luciLab(t)
	out := filepath.Join(t.TempDir(), "voipgw.prom")
	if s, err := gw.run("metrics", "--output", out); err != nil {
		t.Fatalf("metrics: %v\n%s", err, s)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (node-exporter reads it as another user)", fi.Mode().Perm())
	}
	got := parseMetrics(t, string(b))
	for _, c := range []struct {
		name, labels string
		min          float64
	}{
		{"voipgw_phones", "vendor=yealink", 1},
		{"voipgw_phones", "vendor=gigaset", 1},
		{"voipgw_nat_mappings", "", 2},
		{"voipgw_dns_learned_addresses", "", 1},
		{"voipgw_scanners", "", 1},
		{"voipgw_packets_total", "counter=allowed", 1},
		{"voipgw_packets_total", "counter=scanners_detected", 1},
		{"voipgw_dns_queries_total", "", 0}, // present; the daemon publishes its counters every 2 s
		{"voipgw_keepalive_running", "", 1},
		{"voipgw_table_present", "", 1},
	} {
		if v, ok := got[c.name][c.labels]; !ok || v < c.min {
			t.Errorf("%s{%s} = %v (present %v), want at least %v\n%s", c.name, c.labels, v, ok, c.min, b)
		}
	}
	if v := got["voipgw_problems"][""]; v != 0 {
		t.Errorf("voipgw_problems %v in the lab", v)
	}
	if _, ok := got["voipgw_packets_total"]["counter=blocked_not_allowlisted"]; !ok {
		t.Errorf("a zero counter is missing: %v", got["voipgw_packets_total"])
	}
	t.Logf("%d families, %d bytes", len(got), len(b))
}
