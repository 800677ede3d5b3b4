package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
)

// Addresses of the lab. Only TEST-NET ranges (RFC 5737, RFC 3849) are used and no
// namespace has a route out of the lab.
var (
	// VoIP network: the gateway address is configured by voipgw apply, not the lab.
	VoIPGateway4 = netip.MustParsePrefix("192.0.2.1/25")
	VoIPGateway6 = netip.MustParsePrefix("2001:db8:20::1/64")
	Phone1Addr   = netip.MustParsePrefix("192.0.2.10/25")
	Phone2Addr   = netip.MustParsePrefix("192.0.2.11/25")
	Phone1Addr6  = netip.MustParsePrefix("2001:db8:20::10/64")
	Phone2Addr6  = netip.MustParsePrefix("2001:db8:20::11/64")

	// Data LAN.
	LANGateway = netip.MustParsePrefix("192.0.2.129/25")
	LANPCAddr  = netip.MustParsePrefix("192.0.2.130/25")

	// WAN between the gateway and the "internet".
	WANGateway = netip.MustParsePrefix("198.51.100.2/24")
	WANPeer    = netip.MustParsePrefix("198.51.100.1/24")
	WANGW6     = netip.MustParsePrefix("2001:db8:ff::2/64")
	WANPeer6   = netip.MustParsePrefix("2001:db8:ff::1/64")

	// Hosts on the internet side (addresses of the inet namespace).
	SBC        = netip.MustParseAddr("203.0.113.10") // sbc.icvoip.net
	SBC2       = netip.MustParseAddr("203.0.113.11") // sbc-bria.icvoip.net
	Platform   = netip.MustParseAddr("203.0.113.20") // ws1.icvoip.net
	STUNAlt    = netip.MustParseAddr("203.0.113.21") // the lab STUN server's alternate address (primary: Platform)
	DNSServer  = netip.MustParseAddr("203.0.113.53") // the lab's name server
	Unlisted   = netip.MustParseAddr("203.0.113.66") // a host no profile allows
	Scanner    = netip.MustParseAddr("203.0.113.99") // port scanner
	SBC6       = netip.MustParseAddr("2001:db8:cafe::10")
	Unlisted6  = netip.MustParseAddr("2001:db8:cafe::66")
	HostsOnNet = []netip.Addr{SBC, SBC2, Platform, STUNAlt, DNSServer, Unlisted, Scanner, SBC6, Unlisted6}

	// Interface names inside the gateway namespace.
	GWVoIPIf = "voip0"
	GWLANIf  = "lan0"
	GWWANIf  = "wan0"
)

// Names the lab's DNS server answers: the catalog hosts the tests use.
var DNSNames = map[string][]netip.Addr{
	"sbc.icvoip.net":      {SBC, SBC6},
	"sbc-bria.icvoip.net": {SBC2},
	"ws1.icvoip.net":      {Platform},
	"ws2.icvoip.net":      {Platform},
	"unlisted.example":    {Unlisted},
}

// Lab is the topology:
//
//	phone1 ─┐
//	        ├─ sw (bridge) ── voip0 ┐
//	phone2 ─┘                       │
//	lanpc ─────────────────── lan0 ─┼─ gw ── wan0 ─── inet (SBCs, DNS, unlisted host, scanner)
type Lab struct {
	Prefix                            string
	GW, Switch, Phone1, Phone2, LANPC *NS
	Inet                              *NS
	all                               []*NS
	closers                           []func() error
}

// New builds the lab. prefix keeps namespace names unique (e.g. "vg123").
// On error everything made so far is removed.
func New(prefix string) (l *Lab, err error) {
	l = &Lab{Prefix: prefix}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	mk := func(role string) (*NS, error) {
		ns, err := NewNS(prefix + "-" + role)
		if err != nil {
			return nil, err
		}
		l.all = append(l.all, ns)
		// No duplicate address detection in the lab: link-local addresses would stay
		// tentative for a second and delay the first IPv6 packet of every test.
		return ns, ns.Do(func() error {
			for _, c := range []string{"all", "default"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+c+"/accept_dad", []byte("0"), 0o644); err != nil {
					return fmt.Errorf("disable DAD: %w", err)
				}
			}
			return nil
		})
	}
	for _, p := range []struct {
		dst  **NS
		role string
	}{{&l.GW, "gw"}, {&l.Switch, "sw"}, {&l.Phone1, "phone1"}, {&l.Phone2, "phone2"}, {&l.LANPC, "lanpc"}, {&l.Inet, "inet"}} {
		if *p.dst, err = mk(p.role); err != nil {
			return nil, err
		}
	}

	// Switch for the VoIP network: a plain bridge in its own namespace, so the gateway
	// sees one dedicated VoIP port (voip0), as with a router's lan4.
	if err := l.Switch.Do(func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		return netlink.LinkSetUp(br)
	}); err != nil {
		return nil, err
	}
	if err := veth(l.GW, GWVoIPIf, l.Switch, "p-gw", "br0"); err != nil {
		return nil, err
	}
	if err := veth(l.Phone1, "eth0", l.Switch, "p-phone1", "br0"); err != nil {
		return nil, err
	}
	if err := veth(l.Phone2, "eth0", l.Switch, "p-phone2", "br0"); err != nil {
		return nil, err
	}
	if err := veth(l.GW, GWLANIf, l.LANPC, "eth0", ""); err != nil {
		return nil, err
	}
	if err := veth(l.GW, GWWANIf, l.Inet, "eth0", ""); err != nil {
		return nil, err
	}

	steps := []struct {
		ns *NS
		fn func() error
	}{
		{l.Phone1, hostSetup("eth0", []netip.Prefix{Phone1Addr, Phone1Addr6}, VoIPGateway4.Addr(), VoIPGateway6.Addr())},
		{l.Phone2, hostSetup("eth0", []netip.Prefix{Phone2Addr, Phone2Addr6}, VoIPGateway4.Addr(), VoIPGateway6.Addr())},
		{l.LANPC, hostSetup("eth0", []netip.Prefix{LANPCAddr}, LANGateway.Addr(), netip.Addr{})},
		{l.GW, gwSetup},
		{l.Inet, inetSetup},
	}
	for _, s := range steps {
		if err := s.ns.Do(s.fn); err != nil {
			return nil, fmt.Errorf("set up %s: %w", s.ns.Name, err)
		}
	}
	return l, nil
}

// veth connects a (ifA) to b (ifB); with bridge set, ifB becomes a port of it.
func veth(a *NS, ifA string, b *NS, ifB, bridge string) error {
	tmp := fmt.Sprintf("vgtmp%d", os.Getpid()%100000)
	err := a.Do(func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifA}, PeerName: tmp, PeerNamespace: netlink.NsFd(int(b.Handle()))}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("veth %s: %w", ifA, err)
		}
		link, err := netlink.LinkByName(ifA)
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(link)
	})
	if err != nil {
		return err
	}
	return b.Do(func() error {
		link, err := netlink.LinkByName(tmp)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetName(link, ifB); err != nil {
			return fmt.Errorf("rename %s: %w", ifB, err)
		}
		if bridge != "" {
			br, err := netlink.LinkByName(bridge)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetMaster(link, br); err != nil {
				return err
			}
		}
		return netlink.LinkSetUp(link)
	})
}

func addAddr(ifname string, p netip.Prefix) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if p.Addr().Is6() {
		a.Flags = 0x02 // IFA_F_NODAD: usable at once, the lab has no duplicates
	}
	if err := netlink.AddrAdd(link, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, ifname, err)
	}
	return nil
}

func addRoute(dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{Dst: prefixNet(dst), Gw: gw.AsSlice()}
	if err := netlink.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, gw, err)
	}
	return nil
}

func hostSetup(ifname string, addrs []netip.Prefix, gw4, gw6 netip.Addr) func() error {
	return func() error {
		for _, a := range addrs {
			if err := addAddr(ifname, a); err != nil {
				return err
			}
		}
		if err := addRoute(netip.MustParsePrefix("0.0.0.0/0"), gw4); err != nil {
			return err
		}
		if gw6.IsValid() {
			return addRoute(netip.MustParsePrefix("::/0"), gw6)
		}
		return nil
	}
}

func gwSetup() error {
	for _, a := range []struct {
		ifname string
		p      netip.Prefix
	}{{GWLANIf, LANGateway}, {GWWANIf, WANGateway}, {GWWANIf, WANGW6}} {
		if err := addAddr(a.ifname, a.p); err != nil {
			return err
		}
	}
	if err := addRoute(netip.MustParsePrefix("0.0.0.0/0"), WANPeer.Addr()); err != nil {
		return err
	}
	return addRoute(netip.MustParsePrefix("::/0"), WANPeer6.Addr())
}

func inetSetup() error {
	if err := addAddr("eth0", WANPeer); err != nil {
		return err
	}
	if err := addAddr("eth0", WANPeer6); err != nil {
		return err
	}
	for _, h := range HostsOnNet {
		if err := addAddr("lo", netip.PrefixFrom(h, h.BitLen())); err != nil {
			return err
		}
	}
	// The LAN is routed (not masqueraded) in the lab; the VoIP subnet is masqueraded
	// by voipgw over IPv4 and routed over IPv6.
	// The /24 covers the VoIP subnet too, so unsolicited inbound probes reach the gateway
	// (and are dropped there) instead of dying for lack of a route.
	if err := addRoute(netip.MustParsePrefix("192.0.2.0/24"), WANGateway.Addr()); err != nil {
		return err
	}
	return addRoute(netip.MustParsePrefix("2001:db8:20::/64"), WANGW6.Addr())
}

// Close stops the lab's servers and removes every namespace (and with them every link).
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.closers) - 1; i >= 0; i-- {
		errs = append(errs, l.closers[i]())
	}
	l.closers = nil
	for _, ns := range l.all {
		errs = append(errs, ns.Close())
	}
	return errors.Join(errs...)
}

// Run runs a command inside ns and returns its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	var out []byte
	err := ns.Do(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	s := string(out)
	if err != nil {
		return s, fmt.Errorf("%s %s in %s: %w\n%s", name, strings.Join(args, " "), ns.Name, err, s)
	}
	return s, nil
}

// Config returns a voipgw UCI config for the lab's gateway; extra is appended verbatim.
func Config(extra string) string {
	return fmt.Sprintf(`config voipgw 'main'
	option wan '%s'
	list lan '%s'
	option table 'voipgw'

config vlan 'voice'
	option device '%s'
	option ipaddr '%s'
	option ip6addr '%s'

config dns 'dns'
	list upstream '%s'
%s`, GWWANIf, GWLANIf, GWVoIPIf, VoIPGateway4, VoIPGateway6, DNSServer, extra)
}

// AddAddrs gives a host namespace (a phone) more addresses on its eth0, e.g. to
// stand in for many phones behind one switch port. They go with the namespace.
func (ns *NS) AddAddrs(addrs ...netip.Prefix) error {
	return ns.Do(func() error {
		for _, a := range addrs {
			if err := addAddr("eth0", a); err != nil {
				return err
			}
		}
		return nil
	})
}

// SyncBuffer collects a process's output (its Stdout and Stderr) while tests read
// it: safe for concurrent writes and reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
