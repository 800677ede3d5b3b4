package firewall

import (
	"slices"
	"testing"

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
