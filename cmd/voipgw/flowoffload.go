package main

import (
	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/uci"
)

// fw4FirewallPath is firewall4's config, read for its flow offloading switch; a
// variable for the tests.
var fw4FirewallPath = "/etc/config/firewall"

// flowOffloadWarning is firewall.FW4FlowOffloadWarning for a config whose table
// keeps state from the packet path (full-cone mappings and IPv6 pinholes with
// nat enabled, media tracking with the keep-alive helper), "" when that does not
// apply or there is no readable firewall4 config at fwPath.
func flowOffloadWarning(cfg *config.Config, fwPath string) string {
	if cfg == nil || !(cfg.NAT.Enabled || cfg.Keepalive.Enabled) {
		return ""
	}
	fw, err := uci.ParseFile(fwPath)
	if err != nil {
		return "" // no firewall4 (or not readable): nothing offloads through it
	}
	return firewall.FW4FlowOffloadWarning(fw)
}
