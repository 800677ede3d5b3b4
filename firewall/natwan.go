package firewall

import (
	"errors"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WANAddr4 is the IPv4 address masquerade gives the phones' flows on dev: its first
// primary global address. The zero Addr when dev has none (not up yet) or does not
// exist; the full cone's snat rule is then left out until the next apply.
func WANAddr4(dev string) netip.Addr {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
		// The address table changed during the dump (netifd at work): ask again,
		// or the full cone would be left out until the next apply.
		addrs, err = netlink.AddrList(link, netlink.FAMILY_V4)
	}
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_SECONDARY != 0 || a.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			return ip
		}
	}
	return netip.Addr{}
}
