package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/dhcpd"
)

// The DHCP server as a daemon component, and the phones in `voipgw status`.

func init() {
	daemonComponents = append(daemonComponents, newDHCPComponent)
	statusProviders = append(statusProviders, dhcpStatus)
	featurePrinters["dhcp"] = printDHCPStatus
}

func leaseFile(cfg *config.Config, stateDir string) string {
	if cfg.DHCP.LeaseFile != "" {
		return cfg.DHCP.LeaseFile
	}
	return filepath.Join(stateDir, "dhcp.leases.json")
}

type dhcpComponent struct{ srv *dhcpd.Server }

func (c *dhcpComponent) Name() string                  { return "dhcp" }
func (c *dhcpComponent) Run(ctx context.Context) error { return c.srv.Run(ctx) }

func newDHCPComponent(env *daemonEnv) (component, error) {
	cfg := env.Config
	if !cfg.DHCP.Enabled {
		return nil, nil
	}
	srv, err := dhcpd.New(dhcpd.Config{Ifname: env.Ifname, ServerIP: cfg.Net.IPv4.Addr(), Subnet: cfg.Net.Subnet4(),
		DHCP: cfg.DHCP, LeaseFile: leaseFile(cfg, env.StatusDir), Log: env.Log.With("component", "dhcp")})
	if err != nil {
		return nil, err
	}
	return &dhcpComponent{srv: srv}, nil
}

// phoneView is one phone in `voipgw status`.
type phoneView struct {
	MAC       string    `json:"mac"`
	IP        string    `json:"ip"`
	Hostname  string    `json:"hostname,omitempty"`
	Vendor    string    `json:"vendor,omitempty"`
	Expires   time.Time `json:"expires"`
	ExpiresIn string    `json:"expires_in"`
	Static    bool      `json:"static,omitempty"`
}

func dhcpStatus(r *statusReport) (string, any, []string) {
	cfg, _, err := config.Load(r.ConfigPath)
	if err != nil || !cfg.DHCP.Enabled {
		return "", nil, nil
	}
	phones := []phoneView{}
	b, err := os.ReadFile(leaseFile(cfg, r.StateDir))
	if err != nil && !os.IsNotExist(err) {
		return "dhcp", phones, []string{"dhcp: " + err.Error()}
	}
	var ls []dhcpd.Lease
	if len(b) > 0 {
		if err := json.Unmarshal(b, &ls); err != nil {
			return "dhcp", phones, []string{"dhcp: lease file: " + err.Error()}
		}
	}
	now := time.Now()
	for _, l := range ls {
		in := "expired"
		if l.Expires.After(now) {
			in = l.Expires.Sub(now).Round(time.Second).String()
		}
		phones = append(phones, phoneView{MAC: l.MAC, IP: l.IP.String(), Hostname: l.Hostname, Vendor: l.Vendor,
			Expires: l.Expires, ExpiresIn: in, Static: l.Static})
	}
	return "dhcp", phones, nil
}

func printDHCPStatus(out io.Writer, value any) {
	phones, ok := value.([]phoneView)
	if !ok {
		return
	}
	fmt.Fprintf(out, "Phones (DHCP leases)\n")
	if len(phones) == 0 {
		fmt.Fprintf(out, "  none\n")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  MAC\tIP\thostname\tvendor\texpires in\n")
	for _, p := range phones {
		static := ""
		if p.Static {
			static = " (static)"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\t%s\t%s\t%s\n", p.MAC, p.IP, static, printable(p.Hostname), printable(p.Vendor), p.ExpiresIn)
	}
	tw.Flush()
}

// printable keeps what a phone sent (hostname, vendor class) from reaching the
// admin's terminal as control sequences.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}
