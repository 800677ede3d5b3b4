package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
)

// gpProbe measures, on the gateway's table, what a commit that deletes costs
// compared with one that adds (BENCHMARKS.md §3): per set type, one element
// added then deleted, each on its own socket; the time of the commit (Flush on a
// lasting connection) and of closing the socket right after it. A deleting commit
// returns at once; the close waits for the kernel's deferred release of what was
// deleted (an RCU grace period; package nfhold).
func gpProbe(e *env) error {
	t := &nftables.Table{Name: "voipgw", Family: nftables.TableFamilyINet}
	key := []byte{192, 0, 2, 250, 17, 0, 0, 0, 0, 1, 0, 0} // 192.0.2.250 . udp . 1: in no set of the bench
	cases := []struct {
		name string
		s    *nftables.Set
		el   []nftables.SetElement
	}{
		{"allow4 (hash)", &nftables.Set{Table: t, Name: "allow4"}, []nftables.SetElement{{Key: key}}},
		{"allow4_ranges (pipapo)", &nftables.Set{Table: t, Name: "allow4_ranges", Interval: true, Concatenation: true},
			[]nftables.SetElement{{Key: key, KeyEnd: key}}},
		{"platform4 (rbtree)", &nftables.Set{Table: t, Name: "platform4", Interval: true},
			[]nftables.SetElement{{Key: key[:4]}, {Key: []byte{192, 0, 2, 251}, IntervalEnd: true}}},
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	step := func(s *nftables.Set, el []nftables.SetElement, del bool) (commit, closing float64, err error) {
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return 0, 0, err
		}
		t0 := time.Now()
		if del {
			err = c.SetDeleteElements(s, el)
		} else {
			err = c.SetAddElements(s, el)
		}
		if err == nil {
			err = c.Flush()
		}
		commit = ms(time.Since(t0))
		t0 = time.Now()
		c.CloseLasting()
		return commit, ms(time.Since(t0)), err
	}
	fmt.Println("\napply: kernel cost of a commit that adds / deletes one element (11 each, medians; close = the socket's close right after)")
	return e.l.GW.Do(func() error {
		for _, c := range cases {
			var addC, addX, delC, delX []float64
			for range 11 {
				a, b, err := step(c.s, c.el, false)
				if err != nil {
					return fmt.Errorf("%s: add: %w", c.name, err)
				}
				addC, addX = append(addC, a), append(addX, b)
				if a, b, err = step(c.s, c.el, true); err != nil {
					return fmt.Errorf("%s: delete: %w", c.name, err)
				}
				delC, delX = append(delC, a), append(delX, b)
				time.Sleep(40 * time.Millisecond) // the previous grace period is over
			}
			fmt.Printf("%-24s add: commit %.2f ms, close %.2f ms | delete: commit %.2f ms, close %.2f ms (%.1f-%.1f)\n",
				c.name, median(addC), median(addX), median(delC), median(delX), slices.Min(delX), slices.Max(delX))
		}
		return nil
	})
}
