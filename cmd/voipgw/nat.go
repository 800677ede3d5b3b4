package main

import (
	"log/slog"
	"net/netip"

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
