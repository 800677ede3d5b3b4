package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/voipgw/voipgw/lab"
)

func dhcpPhones(t *testing.T, st statusReport) map[string]phoneView {
	t.Helper()
	var ps []phoneView
	b, _ := json.Marshal(st.Features["dhcp"])
	if err := json.Unmarshal(b, &ps); err != nil {
		t.Fatalf("status dhcp: %v (%s)", err, b)
	}
	out := map[string]phoneView{}
	for _, p := range ps {
		out[p.MAC] = p
	}
	return out
}

func TestDHCPInLab(t *testing.T) {
	l, gw := newLab(t)
	mac2, err := lab.HWAddr(l.Phone2, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := lab.Config(fmt.Sprintf(`
config dhcp 'dhcp'
	option start '20'
	option limit '10'
	option leasetime '1h'
	list ntp '192.0.2.1'
	option provisioning_url 'https://prov.example.com/cfg/'
	list vendor_option 'yealink,161,https://yealink.example.com/'

config host 'reception'
	option mac '%s'
	option ip '192.0.2.50'
	option name 'reception'
`, mac2))
	if err := os.WriteFile(gw.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, gw)
	waitFor(t, "the DHCP server", d, func() bool { return strings.Contains(d.Log(), "component started\" component=dhcp") })

	gwIP := lab.VoIPGateway4.Addr().AsSlice()
	var ack1 *dhcpv4.DHCPv4
	t.Run("a phone gets a lease with the right options", func(t *testing.T) {
		ack1, err = lab.DHCPLease(l.Phone1, "eth0", 2*time.Second,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("yealink SIP-T54W")), dhcpv4.WithOption(dhcpv4.OptHostName("t54w")))
		if err != nil {
			t.Fatalf("%v\n%s", err, d.Log())
		}
		ip := ack1.YourIPAddr.To4()
		if ip == nil || ip[3] < 20 || ip[3] > 29 || !lab.VoIPGateway4.Contains(addrFrom(ip)) {
			t.Errorf("address %v, want one of the pool 192.0.2.20-29", ack1.YourIPAddr)
		}
		if !ack1.ServerIdentifier().Equal(gwIP) || len(ack1.Router()) != 1 || !ack1.Router()[0].Equal(gwIP) {
			t.Errorf("server id %v, router %v: want the gateway", ack1.ServerIdentifier(), ack1.Router())
		}
		if dns := ack1.DNS(); len(dns) != 1 || !dns[0].Equal(gwIP) {
			t.Errorf("DNS %v, want the gateway", dns)
		}
		if ntp := ack1.NTPServers(); len(ntp) != 1 || !ntp[0].Equal(gwIP) {
			t.Errorf("NTP (42) %v", ntp)
		}
		if ack1.SubnetMask().String() != "ffffff80" || ack1.IPAddressLeaseTime(0) != time.Hour {
			t.Errorf("mask %v, lease time %v", ack1.SubnetMask(), ack1.IPAddressLeaseTime(0))
		}
		for code, want := range map[uint8]string{66: "https://prov.example.com/cfg/", 160: "https://prov.example.com/cfg/", 161: "https://yealink.example.com/"} {
			if got := string(ack1.GetOneOption(dhcpv4.GenericOptionCode(code))); got != want {
				t.Errorf("option %d = %q, want %q", code, got, want)
			}
		}
		if got := ack1.GetOneOption(dhcpv4.GenericOptionCode(114)); got != nil {
			t.Errorf("option 114 sent to a Yealink: %q", got)
		}
	})
	t.Run("a static lease and Gigaset's option 114", func(t *testing.T) {
		ack, err := lab.DHCPLease(l.Phone2, "eth0", 2*time.Second, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("Gigaset N670 IP PRO")))
		if err != nil {
			t.Fatal(err)
		}
		if ack.YourIPAddr.String() != "192.0.2.50" || ack.HostName() != "reception" {
			t.Errorf("static lease: %v %q", ack.YourIPAddr, ack.HostName())
		}
		if got := string(ack.GetOneOption(dhcpv4.GenericOptionCode(114))); got != "https://prov.example.com/cfg/" {
			t.Errorf("option 114 = %q for a Gigaset", got)
		}
		if got := ack.GetOneOption(dhcpv4.GenericOptionCode(161)); got != nil {
			t.Errorf("the Yealink vendor option went to a Gigaset: %q", got)
		}
	})
	mac1, _ := lab.HWAddr(l.Phone1, "eth0")
	t.Run("status lists the phones", func(t *testing.T) {
		ps := dhcpPhones(t, gw.status())
		p1, p2 := ps[mac1.String()], ps[mac2.String()]
		if p1.IP != ack1.YourIPAddr.String() || p1.Hostname != "t54w" || p1.Vendor != "yealink" || p1.Expires.IsZero() {
			t.Errorf("phone1 in status: %+v", p1)
		}
		if p2.IP != "192.0.2.50" || p2.Hostname != "reception" || p2.Vendor != "gigaset" || !p2.Static {
			t.Errorf("phone2 in status: %+v", p2)
		}
		out, _ := gw.run("status")
		if !strings.Contains(out, mac1.String()) || !strings.Contains(out, "reception") {
			t.Errorf("status text lacks the phones:\n%s", out)
		}
	})
	t.Run("leases survive a daemon restart", func(t *testing.T) {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
		d2 := startDaemon(t, gw)
		waitFor(t, "the DHCP server", d2, func() bool { return strings.Contains(d2.Log(), "component started\" component=dhcp") })
		if ps := dhcpPhones(t, gw.status()); ps[mac1.String()].IP != ack1.YourIPAddr.String() {
			t.Errorf("after restart status has %+v", ps)
		}
		// A third client that asks for phone1's address does not get it.
		ack3, err := lab.DHCPLease(l.Phone2, "eth0", 2*time.Second, dhcpv4.WithHwAddr(net.HardwareAddr{0x02, 0, 0, 0, 0, 0x33}),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack1.YourIPAddr)))
		if err == nil && ack3.YourIPAddr.Equal(ack1.YourIPAddr) {
			t.Errorf("phone1's address %v went to another MAC after the restart", ack1.YourIPAddr)
		}
		again, err := lab.DHCPLease(l.Phone1, "eth0", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !again.YourIPAddr.Equal(ack1.YourIPAddr) {
			t.Errorf("phone1 got %v after the restart, had %v", again.YourIPAddr, ack1.YourIPAddr)
		}
	})
}

func addrFrom(ip net.IP) netip.Addr { a, _ := netip.AddrFromSlice(ip.To4()); return a }
