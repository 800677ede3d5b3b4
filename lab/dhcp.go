package lab

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// DHCPLease runs a DHCP client exchange (DISCOVER, OFFER, REQUEST, ACK) on ifname in
// ns, as a phone does at boot, and returns the ACK. mods are added to the client's
// messages (vendor class, host name, requested address).
func DHCPLease(ns *NS, ifname string, timeout time.Duration, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	var ack *dhcpv4.DHCPv4
	err := ns.Do(func() error {
		c, err := nclient4.New(ifname, nclient4.WithTimeout(timeout), nclient4.WithRetry(2))
		if err != nil {
			return fmt.Errorf("dhcp client on %s: %w", ifname, err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*timeout)
		defer cancel()
		lease, err := c.Request(ctx, mods...)
		if err != nil {
			return fmt.Errorf("dhcp exchange on %s in %s: %w", ifname, ns.Name, err)
		}
		ack = lease.ACK
		return nil
	})
	return ack, err
}

// HWAddr returns the MAC address of ifname in ns.
func HWAddr(ns *NS, ifname string) (net.HardwareAddr, error) {
	var hw net.HardwareAddr
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		hw = l.Attrs().HardwareAddr
		return nil
	})
	return hw, err
}
