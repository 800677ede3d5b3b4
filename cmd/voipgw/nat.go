package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/firewall"
)

// wanAddrForNAT reads the WAN address the full cone's snat rule needs at apply.
// Without one (PPPoE or DHCP not up yet) the phones get plain masquerade until the
// next apply (the hotplug reload when WAN comes up, or voipgw run's WAN watch).
func wanAddrForNAT(cfg *config.Config, log *slog.Logger) netip.Addr {
	if !cfg.NAT.Enabled {
		return netip.Addr{}
	}
	a := firewall.WANAddr4(cfg.WAN)
	if !a.IsValid() {
		log.Warn("nat: WAN has no IPv4 address yet; endpoint-independent mapping starts with the next apply", "wan", cfg.WAN)
	}
	return a
}

func init() {
	statusProviders = append(statusProviders, natStatus)
	featurePrinters["nat"] = printNATStatus
}

// natReport is the nat part of `voipgw status`.
type natReport struct {
	Filtering string             `json:"filtering"`
	WAN       netip.Addr         `json:"wan_address,omitzero"`
	Kernel    firewall.NATStatus `json:"kernel"`
	// New endpoints given a remapped port, and first packets dropped because no
	// free port was found (the table's counters).
	Remapped  uint64 `json:"remapped"`
	Exhausted uint64 `json:"exhausted"`
}

func natStatus(r *statusReport) (string, any, []string) {
	cfg, _, err := config.Load(r.ConfigPath)
	if err != nil || (!cfg.NAT.Enabled && !cfg.Keepalive.Enabled) || !r.Firewall.Present {
		return "", nil, nil
	}
	rep := natReport{Filtering: cfg.NAT.Filtering, WAN: firewall.WANAddr4(cfg.WAN),
		Remapped: r.Firewall.Counters[firewall.CounterNATRemapped].Packets, Exhausted: r.Firewall.Counters[firewall.CounterNATExhausted].Packets}
	var problems []string
	if rep.Kernel, err = firewall.ReadNAT(r.Firewall.Table); err != nil {
		problems = append(problems, "nat: "+err.Error())
	}
	if cfg.NAT.Enabled && !rep.Kernel.Present {
		problems = append(problems, "nat: the full-cone maps are missing from the table: run voipgw apply")
	}
	return "nat", rep, problems
}

func printNATStatus(out io.Writer, v any) {
	r, ok := v.(natReport)
	if !ok {
		return
	}
	k := r.Kernel
	fmt.Fprintf(out, "Full-cone NAT (filtering %s)\n", r.Filtering)
	if k.Present {
		fmt.Fprintf(out, "  mappings   %d (inbound entries %d, conflicts %d)\n", len(k.Mappings), k.Inbound, k.Conflicts)
		for _, m := range k.Mappings {
			note := ""
			if !m.Reachable {
				note = " CONFLICT: another endpoint holds this port inbound"
			}
			fmt.Fprintf(out, "    %s → %s:%d (expires in %s)%s\n", m.Internal, r.WAN, m.External, m.Expires.Round(time.Second), note)
		}
		if len(k.Pinholes) > 0 {
			fmt.Fprintf(out, "  pinholes6  %d\n", len(k.Pinholes))
		}
		fmt.Fprintf(out, "  remapped   %d new endpoints (own port taken), %d packets dropped: no free port\n", r.Remapped, r.Exhausted)
	}
	fmt.Fprintf(out, "  media flows with phone traffic in the last keep-alive interval  %d\n", k.MediaOut)
}
