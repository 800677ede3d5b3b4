// Package vlan owns voipgw's VoIP network interface: the 802.1Q VLAN link (or
// the dedicated port used as is), its gateway addresses, the bridge VLAN
// entries that carry the VoIP VLAN on an OpenWrt DSA bridge, and the
// forwarding sysctls.
//
// The flow is config → Desired (pure data, validated without root) → Apply,
// the one reconciler that changes the kernel → Read, the status as the
// kernel reports it. Apply records in a State exactly what voipgw created or
// changed, so Remove (and the undo func of Apply) revert only that and never
// touch what an administrator configured by hand.
//
// Every function works in the network namespace of the calling OS thread:
// netlink sockets are opened per request on that thread and /proc/sys/net is
// resolved against the opening thread's namespace. Callers that switch
// namespaces must runtime.LockOSThread first.
package vlan

import (
	"errors"
	"fmt"
	"net/netip"
)

// MaxNameLen is the longest interface name Linux accepts (IFNAMSIZ-1).
const MaxNameLen = 15

// Alias is the interface alias (IFLA_IFALIAS, `ip link show` "alias") voipgw
// puts on the VLAN links it creates, so their ownership can be read back from
// the kernel (Status.OwnedByVoipgw).
const Alias = "voipgw"

// Desired is the VoIP network interface voipgw wants.
type Desired struct {
	Name   string         // interface name (e.g. "voice" or "lan4.20")
	Parent string         // parent/trunk device when VID != 0
	VID    int            // 0: Name is an existing dedicated port used as is (never created or deleted)
	Addrs  []netip.Prefix // gateway address(es) with prefix length: one IPv4 and optionally one IPv6
	// AccessPorts are, when Parent is a bridge with vlan_filtering (the
	// OpenWrt DSA layout), bridge ports made untagged access ports (PVID)
	// of VID.
	AccessPorts []string
}

// HasIPv6 reports whether d wants an IPv6 gateway address.
func (d Desired) HasIPv6() bool {
	for _, p := range d.Addrs {
		if p.Addr().Is6() {
			return true
		}
	}
	return false
}

// Validate checks d without looking at the kernel. It reports every problem
// it finds, joined.
func (d Desired) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("vlan: "+format, args...))
	}
	if err := checkName("interface name", d.Name); err != nil {
		errs = append(errs, err)
	} else if d.Name == "all" || d.Name == "default" || d.Name == "lo" {
		// "all" and "default" are the names of the global entries in
		// /proc/sys/net/ipv[46]/conf/; lo is the loopback.
		bad("%q cannot be the VoIP interface", d.Name)
	}
	switch {
	case d.VID < 0 || d.VID > 4094:
		bad("vlan id %d out of range: use 1..4094, or 0 for a dedicated port used as is", d.VID)
	case d.VID == 0 && d.Parent != "":
		bad("parent %q given without a vlan id: a parent is only used to create a vlan (vid 1..4094)", d.Parent)
	case d.VID != 0 && d.Parent == "":
		bad("vlan id %d needs a parent (trunk) device", d.VID)
	case d.VID != 0:
		if err := checkName("parent", d.Parent); err != nil {
			errs = append(errs, err)
		} else if d.Parent == d.Name {
			bad("vlan %s cannot be its own parent", d.Name)
		}
	}
	if len(d.AccessPorts) > 0 && d.VID == 0 {
		bad("access ports %v need a vlan id and a vlan-filtering bridge as parent", d.AccessPorts)
	}
	seenPort := map[string]bool{}
	for _, p := range d.AccessPorts {
		if err := checkName("access port", p); err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case seenPort[p]:
			bad("access port %s listed twice", p)
		case p == d.Name || p == d.Parent:
			bad("access port %s must be a port of the bridge, not the bridge or the vlan itself", p)
		}
		seenPort[p] = true
	}

	var v4, v6 []netip.Prefix
	invalid := 0
	for _, p := range d.Addrs {
		if err := checkAddr(p); err != nil {
			errs = append(errs, err)
			invalid++
			continue
		}
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	if len(v4) > 1 {
		bad("more than one IPv4 gateway address: %v (give exactly one)", v4)
	}
	if len(v6) > 1 {
		bad("more than one IPv6 gateway address: %v (give at most one)", v6)
	}
	if len(v4) == 0 && invalid == 0 {
		bad("%s needs an IPv4 gateway address (e.g. 192.0.2.1/25)", d.Name)
	}
	return errors.Join(errs...)
}

// checkName applies the kernel's rules for interface names (dev_valid_name)
// and, beyond them, allows printable ASCII only: the name also ends up in
// /proc/sys paths, nftables rules and logs.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("vlan: %s is empty", what)
	case len(name) > MaxNameLen:
		return fmt.Errorf("vlan: %s %q is %d characters long; Linux allows at most %d", what, name, len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("vlan: %s %q is not a valid interface name", what, name)
	}
	for _, r := range name {
		if r <= ' ' || r > '~' || r == '/' || r == ':' {
			return fmt.Errorf("vlan: %s %q contains %q, which is not allowed in an interface name", what, name, r)
		}
	}
	return nil
}

var reservedV4 = netip.MustParsePrefix("240.0.0.0/4")

// checkAddr accepts a unicast address that can serve as the default gateway
// of a subnet of phones: room for hosts, not the subnet's network or
// broadcast address.
func checkAddr(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("vlan: invalid gateway address %v", p)
	}
	a := p.Addr()
	switch {
	case a.Is4In6():
		return fmt.Errorf("vlan: gateway address %v is IPv4-mapped IPv6; write it as IPv4", p)
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(),
		a.Is4() && reservedV4.Contains(a):
		return fmt.Errorf("vlan: %v is not a usable unicast gateway address", p)
	case p.Bits() == 0:
		return fmt.Errorf("vlan: gateway address %v has prefix length 0", p)
	}
	net := p.Masked().Addr()
	if a.Is4() {
		if p.Bits() > 30 {
			return fmt.Errorf("vlan: %v leaves no room for phones; use a prefix of /30 or shorter", p)
		}
		if a == net {
			return fmt.Errorf("vlan: %v is the network address of %v, not a host address", p, p.Masked())
		}
		if a == broadcast4(p) {
			return fmt.Errorf("vlan: %v is the broadcast address of %v, not a host address", p, p.Masked())
		}
		return nil
	}
	if p.Bits() > 127 {
		return fmt.Errorf("vlan: %v leaves no room for phones; use a prefix of /127 or shorter (normally /64)", p)
	}
	if a == net {
		return fmt.Errorf("vlan: %v is the Subnet-Router anycast address of %v (all-zero interface identifier), not a host address", p, p.Masked())
	}
	return nil
}

func broadcast4(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := 0; i < 4; i++ {
		b[3-i] |= byte(host >> (8 * i))
	}
	return netip.AddrFrom4(b)
}
