package firewall

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/voipgw/voipgw/lab"
)

// The full-cone table loads on the running kernel through netlink alone (no nft
// CLI, so this also runs in the QEMU VMs on Debian's 6.1 kernels). When it does not,
// the test tries each NAT rule on its own and names the ones the kernel refuses.
func TestNATTableLoadsViaNetlink(t *testing.T) {
	ns := lab.TestNS(t, "natnl")
	for _, eif := range []bool{false, true} {
		tbl, err := Build(natSpec(eif))
		if err != nil {
			t.Fatal(err)
		}
		err = ns.Do(func() error { return Apply(tbl) })
		if err == nil {
			st, rerr := func() (Status, error) {
				var st Status
				var e error
				ns.Do(func() error { st, e = ReadStatus(tbl.Name); return nil })
				return st, e
			}()
			if rerr != nil || !st.Present || st.SetSizes[SetNATOut4] != 0 {
				t.Errorf("eif=%v: read back: present %v, err %v", eif, st.Present, rerr)
			}
			continue
		}
		t.Errorf("eif=%v: the full-cone table does not load: %v", eif, err)
		base, _ := Build(labSpec())
		for _, ch := range tbl.Chains {
			baseCh := chainByName(base, ch.Name)
			for i, r := range ch.Rules {
				if baseCh != nil && slices.ContainsFunc(baseCh.Rules, func(b Rule) bool { return b.Text() == r.Text() }) {
					continue // not a NAT rule
				}
				probe := *tbl
				probe.Chains = nil
				for _, c := range tbl.Chains {
					cc := *c
					if c.Name == ch.Name {
						cc.Rules = []Rule{c.Rules[i]}
					} else if bc := chainByName(base, c.Name); bc != nil {
						cc.Rules = bc.Rules
					} else {
						cc.Rules = nil
					}
					probe.Chains = append(probe.Chains, &cc)
				}
				if perr := ns.Do(func() error { return Apply(&probe) }); perr != nil {
					t.Errorf("  refused in chain %s: %s (%v)", ch.Name, r.Text(), perr)
				}
			}
		}
	}
}

// With real packets and netlink only (no nft, ip or conntrack binaries, so this
// also runs in the big-endian MIPS VM, where drawPort takes its other branch):
// two phones on one source port, the first keeps it, the second is remapped into
// the remap range, each keeps its port towards another destination, and the
// kernel's maps say the same.
func TestNATRemapDrawWithPackets(t *testing.T) {
	lab.RequireRoot(t)
	l, err := lab.New(fmt.Sprintf("vgr%d", os.Getpid()%100000))
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.StartPlatform(); err != nil {
		t.Fatal(err)
	}
	spec := natSpec(true)
	if err := l.GW.Do(func() error {
		link, err := netlink.LinkByName(spec.VoIPIf)
		if err != nil {
			return err
		}
		a := lab.VoIPGateway4
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), 32)}}); err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		tbl, err := Build(spec)
		if err != nil {
			return err
		}
		return Apply(tbl)
	}); err != nil {
		t.Fatalf("gateway: %v", err)
	}
	const port = 41210
	var conns []*net.UDPConn
	for _, p := range []struct {
		ns *lab.NS
		a  netip.Addr
	}{{l.Phone1, lab.Phone1Addr.Addr()}, {l.Phone2, lab.Phone2Addr.Addr()}} {
		c, err := lab.ListenUDP(p.ns, netip.AddrPortFrom(p.a, port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	seen := func(c *net.UDPConn, dst netip.AddrPort) netip.AddrPort {
		t.Helper()
		ap, err := lab.EchoSource(c, dst)
		if err != nil {
			t.Fatal(err)
		}
		return ap
	}
	sbc := netip.AddrPortFrom(lab.SBC, 5060)
	m1, m2 := seen(conns[0], sbc), seen(conns[1], sbc)
	r := spec.NAT.Remap
	if m1 != netip.AddrPortFrom(spec.NAT.WANAddr, port) || m2.Addr() != spec.NAT.WANAddr || m2.Port() < r.First || m2.Port() > r.Last {
		t.Fatalf("mappings %s and %s: want %s:%d and a port in %d-%d", m1, m2, spec.NAT.WANAddr, port, r.First, r.Last)
	}
	for i, want := range []netip.AddrPort{m1, m2} {
		if got := seen(conns[i], netip.AddrPortFrom(lab.SBC2, 5060)); got != want {
			t.Errorf("phone %d → SBC2 mapped to %s, want %s", i+1, got, want)
		}
	}
	var st NATStatus
	if err := l.GW.Do(func() (err error) { st, err = ReadNAT(spec.Table); return err }); err != nil {
		t.Fatal(err)
	}
	got := map[netip.AddrPort]uint16{}
	for _, m := range st.Mappings {
		got[m.Internal] = m.External
	}
	if got[netip.AddrPortFrom(lab.Phone1Addr.Addr(), port)] != m1.Port() || got[netip.AddrPortFrom(lab.Phone2Addr.Addr(), port)] != m2.Port() || st.Conflicts != 0 {
		t.Errorf("kernel maps %+v, want phone1 → %d and phone2 → %d, no conflicts", st.Mappings, m1.Port(), m2.Port())
	}
}
