package vlan

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// Status is the VoIP interface as the kernel reports it, for `voipgw status`.
type Status struct {
	Name      string         `json:"name"`
	Exists    bool           `json:"exists"`
	Kind      string         `json:"kind,omitempty"` // "vlan", "veth", "bridge", "device" (physical), ...
	Up        bool           `json:"up"`             // administratively up (IFF_UP)
	OperState string         `json:"oper_state,omitempty"`
	Parent    string         `json:"parent,omitempty"` // vlan only
	VID       int            `json:"vid,omitempty"`    // vlan only
	Addrs     []netip.Prefix `json:"addrs,omitempty"`  // all addresses, IPv6 link-local included
	MAC       string         `json:"mac,omitempty"`
	// Forwarding4: IPv4 packets arriving on the interface are routed
	// (net.ipv4.conf.<if>.forwarding, which net.ipv4.ip_forward sets).
	Forwarding4 bool `json:"forwarding4"`
	// Forwarding6: IPv6 is routed (net.ipv6.conf.all.forwarding, the switch
	// the kernel checks) and the interface acts as a router
	// (net.ipv6.conf.<if>.forwarding).
	Forwarding6 bool `json:"forwarding6"`
	// OwnedByVoipgw: the interface carries voipgw's alias, i.e. voipgw
	// created it.
	OwnedByVoipgw bool `json:"owned_by_voipgw"`
}

// Read reports the interface called name as the kernel sees it. A missing
// interface is not an error (Exists is false).
func Read(name string) (Status, error) {
	st := Status{Name: name}
	l, err := findLink(name)
	if err != nil {
		return st, fmt.Errorf("vlan: look up %s: %w", name, err)
	}
	if l == nil {
		return st, nil
	}
	a := l.Attrs()
	st.Exists = true
	st.Kind = l.Type()
	st.Up = isUp(l)
	st.OperState = a.OperState.String()
	st.MAC = a.HardwareAddr.String()
	st.OwnedByVoipgw = a.Alias == Alias
	if v, ok := l.(*netlink.Vlan); ok {
		st.VID = v.VlanId
		st.Parent = linkNameByIndex(v.ParentIndex)
	}
	addrs, err := linkAddrs(name)
	if err != nil {
		return st, fmt.Errorf("vlan: list addresses of %s: %w", name, err)
	}
	for _, ad := range addrs {
		if p := prefixOf(ad); p.IsValid() {
			st.Addrs = append(st.Addrs, p)
		}
	}
	slices.SortFunc(st.Addrs, func(x, y netip.Prefix) int {
		if c := x.Addr().Compare(y.Addr()); c != 0 {
			return c
		}
		return x.Bits() - y.Bits()
	})
	st.Forwarding4 = sysctlIs(ifSysctl("ipv4", name, "forwarding"), "1")
	st.Forwarding6 = sysctlIs(sysIPv6Forward, "1") && sysctlIs(ifSysctl("ipv6", name, "forwarding"), "1")
	return st, nil
}

func sysctlIs(key, value string) bool {
	v, err := readSysctl(key)
	return err == nil && v == value
}
