package firewall

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Counter is one named counter's value.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Status is the table as the kernel has it.
type Status struct {
	Table      string             `json:"table"`
	Present    bool               `json:"present"`
	ConfigHash string             `json:"config_hash,omitempty"` // from the rule comment written by Apply
	Counters   map[string]Counter `json:"counters,omitempty"`
	SetSizes   map[string]int     `json:"set_sizes,omitempty"`
	Chains     int                `json:"chains"`
	Rules      int                `json:"rules"`
	// Undecoded lists chains whose rules the netlink library could not decode
	// (their rules are not in Rules).
	Undecoded []string `json:"undecoded_chains,omitempty"`
}

// ReadStatus reads the table back from the kernel.
func ReadStatus(table string) (Status, error) {
	st := Status{Table: table}
	c, err := nftables.New()
	if err != nil {
		return st, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer c.CloseLasting()
	nt, err := c.ListTableOfFamily(table, family())
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return st, nil
		}
		return st, fmt.Errorf("look up table inet %s: %w", table, err)
	}
	st.Present = true
	objs, err := c.GetNamedObjects(nt)
	if err != nil {
		return st, fmt.Errorf("read counters: %w", err)
	}
	st.Counters = map[string]Counter{}
	for _, o := range objs {
		if name, ctr, ok := counterOf(o); ok {
			st.Counters[name] = Counter{Packets: ctr.Packets, Bytes: ctr.Bytes}
		}
	}
	sets, err := c.GetSets(nt)
	if err != nil {
		return st, fmt.Errorf("read sets: %w", err)
	}
	st.SetSizes = map[string]int{}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			return st, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		n := 0
		for _, e := range elems {
			if !e.IntervalEnd {
				n++
			}
		}
		st.SetSizes[s.Name] = n
	}
	chains, err := c.ListChainsOfTableFamily(family())
	if err != nil {
		return st, fmt.Errorf("read chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != table {
			continue
		}
		st.Chains++
		rules, err := c.GetRules(nt, ch)
		if err != nil {
			// google/nftables v0.3.0 cannot decode every rule the kernel hands back:
			// `ct reply proto-dst` (it reads the u8 NFTA_CT_DIRECTION as a u32), and on
			// MIPS kernels any `limit` (they add a padding attribute it rejects). The
			// chain exists; its rules are reported as not counted instead of failing
			// status. The config hash lives in the forward chain, which has neither.
			st.Undecoded = append(st.Undecoded, ch.Name)
			continue
		}
		st.Rules += len(rules)
		for _, r := range rules {
			if comment, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
				if h, found := strings.CutPrefix(comment, ConfigComment("")); found {
					st.ConfigHash = h
				}
			}
		}
	}
	return st, nil
}

// SetElements returns the elements of one set as nft prints their keys (for status).
func SetElements(table, set string) ([]nftables.SetElement, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer c.CloseLasting()
	s, err := c.GetSetByName(&nftables.Table{Name: table, Family: family()}, set)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", set, err)
	}
	return c.GetSetElements(s)
}

// counterOf accepts both shapes google/nftables returns a counter object in.
func counterOf(o nftables.Obj) (string, Counter, bool) {
	switch c := o.(type) {
	case *nftables.CounterObj:
		return c.Name, Counter{Packets: c.Packets, Bytes: c.Bytes}, true
	case *nftables.NamedObj:
		if e, ok := c.Obj.(*expr.Counter); ok && c.Type == nftables.ObjTypeCounter {
			return c.Name, Counter{Packets: e.Packets, Bytes: e.Bytes}, true
		}
	}
	return "", Counter{}, false
}
