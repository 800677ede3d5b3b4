package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/voipgw/voipgw/firewall"
)

// `voipgw metrics` prints what `voipgw status` reads, in the Prometheus text
// exposition format (version 0.0.4), for node-exporter's textfile collector or
// prometheus-node-exporter-lua's textfile extension:
//
//	voipgw metrics --output /var/prometheus/voipgw.prom   (from cron, every minute)
//
// The encoder is written here (about 80 lines) instead of using
// prometheus/client_golang or prometheus/common/expfmt: those pull in protobuf
// (client_model's MetricFamily is a protobuf message) and, for client_golang,
// net/http, against the project's binary-size goal for MIPS routers. The format
// is small and fixed; metrics_test.go parses the output with the official text
// parser (prometheus/common/expfmt, a test-only dependency that is not linked
// into the binary).

var metricsOutput string

func init() {
	register("metrics", command{order: 35, summary: "print status as Prometheus text metrics (--output FILE: written atomically, for a textfile collector)",
		run: cmdMetrics,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&metricsOutput, "output", "", "write to this file (atomically: temp file + rename) instead of stdout")
		}})
}

func cmdMetrics(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	rep := collectStatus(o)
	fams := statusMetrics(&rep, time.Now())
	if metricsOutput == "" {
		return writeMetrics(out, fams)
	}
	dir := filepath.Dir(metricsOutput)
	tmp, err := os.CreateTemp(dir, ".voipgw-metrics-*")
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing
	if err := writeMetrics(tmp, fams); err != nil {
		tmp.Close()
		return fmt.Errorf("metrics: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("metrics: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("metrics: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), metricsOutput); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// metricFamily is one metric name with its samples.
type metricFamily struct {
	name, help, typ string // typ: "counter" or "gauge"
	samples         []metricSample
}

type metricSample struct {
	labels [][2]string // name, value; in this order
	value  float64
}

func (f *metricFamily) add(v float64, labels ...string) {
	s := metricSample{value: v}
	for i := 0; i+1 < len(labels); i += 2 {
		s.labels = append(s.labels, [2]string{labels[i], labels[i+1]})
	}
	f.samples = append(f.samples, s)
}

// writeMetrics encodes families in the text format: # HELP, # TYPE, one line per
// sample; help text escapes \ and newline, label values also ".
func writeMetrics(w io.Writer, fams []*metricFamily) error {
	bw := bufio.NewWriter(w)
	helpEsc := strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEsc := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	for _, f := range fams {
		if len(f.samples) == 0 {
			continue
		}
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", f.name, helpEsc.Replace(f.help), f.name, f.typ)
		for _, s := range f.samples {
			bw.WriteString(f.name)
			if len(s.labels) > 0 {
				bw.WriteByte('{')
				for i, l := range s.labels {
					if i > 0 {
						bw.WriteByte(',')
					}
					fmt.Fprintf(bw, `%s="%s"`, l[0], labelEsc.Replace(l[1]))
				}
				bw.WriteByte('}')
			}
			bw.WriteByte(' ')
			bw.WriteString(formatMetricValue(s.value))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

func formatMetricValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// statusMetrics turns a status report into metric families. Counters come from
// the kernel (nft named counters) and the daemon's published statistics; they
// start over when the table or the daemon does, which Prometheus' rate() handles
// as a counter reset.
func statusMetrics(r *statusReport, now time.Time) []*metricFamily {
	var fams []*metricFamily
	fam := func(name, typ, help string) *metricFamily {
		f := &metricFamily{name: "voipgw_" + name, typ: typ, help: help}
		fams = append(fams, f)
		return f
	}
	fam("problems", "gauge", "Problems voipgw status reports (0: all well).").add(float64(len(r.Problems)))
	fam("interface_up", "gauge", "The VoIP interface exists and is up.").add(b2f(r.Interface.Exists && r.Interface.Up))
	fam("table_present", "gauge", "voipgw's nftables table is installed.").add(b2f(r.Firewall.Present))

	f := r.Firewall
	if f.Present {
		names := append([]string(nil), firewall.Counters...)
		for n := range f.Counters {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		sort.Strings(names[len(firewall.Counters):])
		pk := fam("packets_total", "counter", "Packets counted by voipgw's named nftables counters (allowed, blocked_* by reason, scanners, nat_*).")
		by := fam("bytes_total", "counter", "Bytes counted by voipgw's named nftables counters.")
		for _, n := range names {
			c, ok := f.Counters[n]
			if !ok {
				continue
			}
			pk.add(float64(c.Packets), "counter", n)
			by.add(float64(c.Bytes), "counter", n)
		}
		allow := f.SetSizes[firewall.SetAllow4] + f.SetSizes[firewall.SetAllow4Range] + f.SetSizes[firewall.SetAllow6] + f.SetSizes[firewall.SetAllow6Range]
		fam("allowlist_elements", "gauge", "Elements of the allowlist sets (after normalisation).").add(float64(allow))
		fam("scanners", "gauge", "Addresses in the scanner sets now (dropped silently until they expire).").add(float64(len(r.Scanners)))
	}

	if v, ok := r.Features["nat"].(natReport); ok {
		k := v.Kernel
		fam("nat_mappings", "gauge", "Full-cone NAT mappings (phone endpoint to external port).").add(float64(len(k.Mappings)))
		fam("nat_inbound_entries", "gauge", "Entries of the inbound NAT map.").add(float64(k.Inbound))
		fam("nat_conflicts", "gauge", "Mappings whose external port another endpoint holds inbound.").add(float64(k.Conflicts))
		fam("nat_pinholes6", "gauge", "IPv6 pinholes of the phones' ports.").add(float64(len(k.Pinholes)))
		fam("media_flows_active", "gauge", "Media flows with phone traffic within the keep-alive interval.").add(float64(k.MediaOut))
	}
	if v, ok := r.Features["dns"].(dnsStatusValue); ok {
		fam("dns_learned_addresses", "gauge", "Addresses the DNS forwarder learned into the table, live now.").add(float64(len(v.Learned)))
		fam("dns_forwarder_running", "gauge", "The DNS forwarder of voipgw run is publishing its status.").add(b2f(v.Running))
		if v.Daemon != nil && v.Running {
			s := v.Daemon.Stats
			for _, c := range []struct {
				name, help string
				v          uint64
			}{
				{"dns_queries_total", "DNS queries from the phones.", s.Queries},
				{"dns_answered_total", "Queries answered.", s.Answered},
				{"dns_refused_total", "Queries refused (clients outside the VoIP network).", s.Refused},
				{"dns_upstream_errors_total", "Queries no upstream answered (SERVFAIL).", s.UpstreamErrors},
				{"dns_discarded_replies_total", "Upstream replies that matched no outstanding query.", s.Discarded},
				{"dns_learned_total", "Addresses learned into the table.", s.Learned},
				{"dns_refreshed_total", "Learned addresses renewed.", s.Refreshed},
				{"dns_evicted_total", "Learned addresses evicted to stay within learned_max.", s.Evicted},
				{"dns_learn_errors_total", "Failed writes of learned addresses.", s.LearnErrors},
			} {
				fam(c.name, "counter", c.help).add(float64(c.v))
			}
		}
	}
	if phones, ok := r.Features["dhcp"].([]phoneView); ok {
		active := map[string]int{}
		expired := 0
		for _, p := range phones {
			if !p.Expires.After(now) && !p.Static {
				expired++
				continue
			}
			vendor := p.Vendor
			if vendor == "" {
				vendor = "unknown"
			}
			active[vendor]++
		}
		ph := fam("phones", "gauge", "Phones with a live DHCP lease, by vendor (option 60 or MAC prefix).")
		vendors := make([]string, 0, len(active))
		for v := range active {
			vendors = append(vendors, v)
		}
		sort.Strings(vendors)
		for _, v := range vendors {
			ph.add(float64(active[v]), "vendor", v)
		}
		if len(vendors) == 0 {
			ph.add(0, "vendor", "unknown")
		}
		fam("dhcp_leases_expired", "gauge", "Leases in the lease file that have expired.").add(float64(expired))
	}
	if v, ok := r.Features["keepalive"].(keepaliveReport); ok {
		fam("keepalive_running", "gauge", "The RTP keep-alive helper of voipgw run is running.").add(b2f(v.Running))
		if v.Daemon != nil && v.Running {
			s := v.Daemon.Stats
			fam("keepalive_flows_tracked", "gauge", "Media flows the keep-alive helper follows now.").add(float64(s.Tracked))
			fam("keepalives_sent_total", "counter", "Keep-alive datagrams sent for silent phones.").add(float64(s.KeepalivesSent))
			fam("keepalive_send_errors_total", "counter", "Keep-alive datagrams that could not be sent.").add(float64(s.SendErrors))
			fam("keepalive_flows_started_total", "counter", "Media flows taken on.").add(float64(s.Started))
			fam("keepalive_flows_gave_up_total", "counter", "Flows silent longer than max_idle.").add(float64(s.GaveUp))
			fam("keepalive_dropped_for_cap_total", "counter", "Flows not followed: max_flows reached.").add(float64(s.DroppedCap))
		}
	}
	if v, ok := r.Features["sip"].(sipStatusValue); ok {
		fam("sip_alg_rules_active", "gauge", "Rules that attach the sip conntrack helper to the VoIP network and are not neutralised.").add(float64(len(v.Report.Active())))
		fam("sip_helper_flows", "gauge", "Conntrack entries of the VoIP network that carry the sip helper.").add(float64(len(v.Report.Flows)))
	}
	return fams
}
