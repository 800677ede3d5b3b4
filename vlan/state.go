package vlan

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// State records exactly what voipgw created or changed in the kernel, so
// that Remove undoes only that. The zero State means "nothing". It is
// JSON-serialisable; the caller persists it between runs.
type State struct {
	Name   string `json:"name,omitempty"`   // the interface Apply configured
	Parent string `json:"parent,omitempty"` // its parent when VID != 0
	VID    int    `json:"vid,omitempty"`

	// CreatedLink: voipgw created the VLAN link Name; Remove deletes it.
	// Never set for an adopted VLAN or a dedicated port.
	CreatedLink bool `json:"created_link,omitempty"`
	// SetLinkUp: Name was down and voipgw brought it up; Remove brings it
	// down again (unless it deletes the link anyway).
	SetLinkUp bool `json:"set_link_up,omitempty"`
	// AddedAddrs are the addresses voipgw added to Name. Addresses that were
	// already there are not listed and are never removed.
	AddedAddrs []netip.Prefix `json:"added_addrs,omitempty"`
	// Sysctls maps each sysctl voipgw changed, in sysctl(8) notation
	// ("net.ipv4.ip_forward", "net.ipv6.conf.lan4/20.accept_ra"), to its
	// value before voipgw first changed it.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// BridgeVLANs are the bridge VLAN entries voipgw added.
	BridgeVLANs []BridgeVLAN `json:"bridge_vlans,omitempty"`
}

// BridgeVLAN is one bridge VLAN table entry voipgw added: either on the
// bridge device itself (Self: `bridge vlan add dev br-lan vid 20 self`) or on
// a bridge port (`bridge vlan add dev lan4 vid 20 pvid untagged`).
type BridgeVLAN struct {
	Dev      string `json:"dev"`
	VID      int    `json:"vid"`
	Self     bool   `json:"self,omitempty"`
	PVID     bool   `json:"pvid,omitempty"`
	Untagged bool   `json:"untagged,omitempty"`
	// PrevPVID is the port's PVID before voipgw made VID its PVID (a port
	// has exactly one). Removing the entry gives the PVID back to it.
	PrevPVID int `json:"prev_pvid,omitempty"`
}

// IsZero reports whether s records nothing to undo.
func (s State) IsZero() bool {
	return s.Name == "" && !s.CreatedLink && !s.SetLinkUp && len(s.AddedAddrs) == 0 &&
		len(s.Sysctls) == 0 && len(s.BridgeVLANs) == 0
}

func (b BridgeVLAN) sameEntry(o BridgeVLAN) bool {
	return b.Dev == o.Dev && b.VID == o.VID && b.Self == o.Self
}

func (b BridgeVLAN) String() string {
	if b.Self {
		return fmt.Sprintf("vid %d on bridge %s itself", b.VID, b.Dev)
	}
	return fmt.Sprintf("vid %d pvid untagged on port %s", b.VID, b.Dev)
}

func findEntry(list []BridgeVLAN, e BridgeVLAN) (BridgeVLAN, bool) {
	for _, x := range list {
		if x.sameEntry(e) {
			return x, true
		}
	}
	return BridgeVLAN{}, false
}

// ifSysctl names a per-interface sysctl in sysctl(8) notation, where a dot
// inside the interface name is written as a slash.
func ifSysctl(family, ifname, leaf string) string {
	return "net." + family + ".conf." + strings.ReplaceAll(ifname, ".", "/") + "." + leaf
}

// isIfSysctlOf reports whether key is a per-interface sysctl of ifname.
func isIfSysctlOf(key, ifname string) bool {
	n := strings.ReplaceAll(ifname, ".", "/")
	return strings.HasPrefix(key, "net.ipv4.conf."+n+".") || strings.HasPrefix(key, "net.ipv6.conf."+n+".")
}

const (
	sysIPv4Forward = "net.ipv4.ip_forward"
	sysIPv6Forward = "net.ipv6.conf.all.forwarding"
)

// sysctlWant is a sysctl value voipgw sets.
type sysctlWant struct{ key, value string }

// wantedSysctls lists the sysctls d needs, per-interface ones first and the
// global forwarding switches last, so that forwarding is turned on only once
// the interface is ready.
//
//   - net.ipv4.ip_forward=1: voipgw routes between the VoIP network and the
//     SIP platform upstream.
//   - net.ipv6.conf.all.forwarding=1, only when d has an IPv6 address: IPv6
//     forwarding is a global switch in Linux (ip6_forward checks "all").
//     Turning it on also makes every interface a router for RA purposes
//     (accept_ra=1 is then ignored; only accept_ra=2 still learns from RAs),
//     which is why voipgw does not touch it for IPv4-only configurations.
//   - net.ipv6.conf.<if>.accept_ra=0 on the VoIP interface, only with IPv6:
//     voipgw is the router of that segment and its address is static; it must
//     never take a default route, prefix or MTU from a Router Advertisement
//     sent by a (possibly misconfigured or hostile) phone on the VoIP
//     network. With forwarding on the kernel ignores RAs at accept_ra=1
//     already, but not at 2, which some setups use; 0 makes it explicit and
//     independent of the forwarding state.
func wantedSysctls(d Desired) []sysctlWant {
	var w []sysctlWant
	if d.HasIPv6() {
		w = append(w, sysctlWant{ifSysctl("ipv6", d.Name, "accept_ra"), "0"})
	}
	w = append(w, sysctlWant{sysIPv4Forward, "1"})
	if d.HasIPv6() {
		w = append(w, sysctlWant{sysIPv6Forward, "1"})
	}
	return w
}

// wantedBridgeVLANs lists the bridge VLAN entries d needs when its parent is
// a vlan-filtering bridge (OpenWrt DSA: br-lan with the switch ports lan1..4):
//
//   - the VID on the bridge itself, tagged ("bridge vlan add dev br-lan vid 20
//     self"), so frames of the VLAN reach the bridge's own side where the
//     802.1Q upper br-lan.20 takes them off;
//   - for each access port "vid 20 pvid untagged": untagged frames from the
//     phone plugged into that port belong to the VoIP VLAN, and VLAN frames
//     leave the port untagged.
//
// voipgw does not remove the port from the default VLAN (VID 1, untagged):
// that membership is the administrator's (netifd's bridge-vlan config), and
// the port may serve a PC daisy-chained behind the phone. While it stays, LAN
// broadcasts of VID 1 still leave the port untagged; to make the port a pure
// VoIP port remove VID 1 from it in the OpenWrt bridge-vlan configuration.
// Making VID the PVID takes the PVID away from VID 1 (a port has one PVID);
// removing the entry gives it back (BridgeVLAN.PrevPVID).
//
// Trunk ports towards other switches are the administrator's to configure.
func wantedBridgeVLANs(d Desired, bridged bool) []BridgeVLAN {
	if !bridged {
		return nil
	}
	w := []BridgeVLAN{{Dev: d.Parent, VID: d.VID, Self: true}}
	for _, p := range d.AccessPorts {
		w = append(w, BridgeVLAN{Dev: p, VID: d.VID, PVID: true, Untagged: true})
	}
	return w
}

// sysctlPath maps sysctl(8) notation to the /proc/sys file. /proc/sys/net is
// resolved against the network namespace of the thread that opens it (the
// kernel looks the table up in current->nsproxy->net_ns), so these reads and
// writes follow the calling thread like the netlink requests do;
// TestSysctlFollowsThreadNetns checks this.
func sysctlPath(key string) string {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, "/", ".")
	}
	return "/proc/sys/" + strings.Join(parts, "/")
}

// managedIfSysctls lists the per-interface sysctls of ifname that
// wantedSysctls may set.
func managedIfSysctls(ifname string) []string {
	return []string{ifSysctl("ipv6", ifname, "accept_ra")}
}

// voipgwValue is the value voipgw writes to a sysctl it manages.
func voipgwValue(key string) string {
	if strings.HasSuffix(key, ".accept_ra") {
		return "0"
	}
	return "1"
}

// sortedSysctlKeys orders keys for release: global switches first (forwarding
// stops before the interface is taken apart), then per-interface ones.
func sortedSysctlKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		switch k {
		case sysIPv4Forward, sysIPv6Forward:
			return 0
		}
		return 1
	}
	sort.Slice(keys, func(i, j int) bool {
		if rank(keys[i]) != rank(keys[j]) {
			return rank(keys[i]) < rank(keys[j])
		}
		return keys[i] < keys[j]
	})
	return keys
}

func wantsSysctl(w []sysctlWant, key string) bool {
	return slices.ContainsFunc(w, func(s sysctlWant) bool { return s.key == key })
}
