package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"

	"github.com/voipgw/voipgw/firewall"
	"github.com/voipgw/voipgw/uci"
)

// Flags of `voipgw fw4-zone`; bound by its flags func (options is shared by all commands).
var fw4Flags struct {
	network, firewall string
	remove            bool
}

func init() {
	register("fw4-zone", command{order: 70,
		summary: "OpenWrt: print the uci batch that gives the VoIP interface its firewall4 zone, forwarding and inbound rule (nothing when in step)",
		run:     cmdFW4Zone,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&fw4Flags.network, "network", "/etc/config/network", "netifd config, to find the WAN zone")
			fs.StringVar(&fw4Flags.firewall, "firewall", "/etc/config/firewall", "firewall4 config")
			fs.BoolVar(&fw4Flags.remove, "remove", false, "print the commands that remove voipgw's zone, forwarding and inbound rule instead")
		},
	})
}

// cmdFW4Zone prints `uci batch` commands; the init script pipes them into uci, commits
// and reloads fw4 only when there were any, so an fw4 reload happens only on change.
func cmdFW4Zone(ctx context.Context, o *options, out io.Writer, log *slog.Logger) error {
	fw, err := uci.ParseFile(fw4Flags.firewall)
	if errors.Is(err, fs.ErrNotExist) {
		fw, err = nil, nil // no firewall4 config: nothing to keep in step, nothing to remove
		if !fw4Flags.remove {
			return fmt.Errorf("%s does not exist: firewall4 is not installed", fw4Flags.firewall)
		}
	}
	if err != nil {
		return err
	}
	var cmds []string
	if fw4Flags.remove {
		cmds = firewall.FW4RemoveCommands(fw)
	} else {
		cfg, err := loadConfig(o.config, log)
		if err != nil {
			return err
		}
		network, err := uci.ParseFile(fw4Flags.network)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		z, err := firewall.FW4ZoneFor(cfg.Net.Ifname, cfg.WAN, network, fw)
		if err != nil {
			return err
		}
		z.KeepHelpers = cfg.SIP.ALG
		// The full cone's mappings and pinholes are new inbound flows fw4 must let
		// pass; without it voipgw lets none in, and fw4's rule goes (or never comes).
		z.Inbound = cfg.NAT.Enabled
		if cmds, err = firewall.FW4Commands(z, fw); err != nil {
			return err
		}
	}
	for _, c := range cmds {
		if _, err := fmt.Fprintln(out, c); err != nil {
			return err
		}
	}
	return nil
}
