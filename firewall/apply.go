package firewall

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// elemChunk bounds the elements per netlink message: the element list is one
// netlink attribute whose length field is 16 bits, so a large allowlist must be
// split into several messages (all still inside the one batch).
const elemChunk = 512

func family() nftables.TableFamily { return nftables.TableFamilyINet }

// Apply installs t in ONE netlink batch: the previous table of that name (if any)
// is deleted and the new one created in the same transaction, so packets see
// either the old or the new ruleset and never a moment without rules. If the
// kernel rejects anything, nothing changes.
//
// Counter values and the elements of Keep sets (scanners) are carried over from
// the previous table, with their remaining timeouts.
func Apply(t *Table) error {
	// The batch goes out in one sendmsg, which the kernel refuses (EMSGSIZE) beyond
	// the socket's send buffer (default about 200 KB: some 7 000 allowlist elements),
	// and its acks (one per message) overflow the default receive buffer (ENOBUFS
	// after the commit) near 100 000. Raise both as nft does (SO_SNDBUFFORCE /
	// SO_RCVBUFFORCE as root; bounds, not allocations).
	c, err := nftables.New(nftables.WithSockOptions(func(nc *netlink.Conn) error {
		return errors.Join(nc.SetWriteBuffer(64<<20), nc.SetReadBuffer(16<<20))
	}))
	if err != nil {
		return fmt.Errorf("open nftables netlink: %w", err)
	}
	defer c.CloseLasting()

	prev, err := readCarryOver(c, t)
	if err != nil {
		return fmt.Errorf("read previous table %s: %w", t.Name, err)
	}

	nt := &nftables.Table{Name: t.Name, Family: family()}
	c.AddTable(nt)
	c.DelTable(nt)
	c.AddTable(nt)

	for _, name := range t.Counters {
		ctr := prev.counters[name]
		c.AddObj(&nftables.CounterObj{Table: nt, Name: name, Bytes: ctr.Bytes, Packets: ctr.Packets})
	}
	addCtTimeouts(c, nt, t) // sip.go
	for _, s := range t.Sets {
		if err := addSet(c, nt, s, prev.elems[s.Name]); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	for _, ch := range t.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: nt}
		if h := ch.Hook; h != nil {
			policy := nftables.ChainPolicyAccept
			nc.Type, nc.Hooknum, nc.Priority, nc.Policy = h.Type, h.Hooknum, nftables.ChainPriorityRef(nftables.ChainPriority(h.Priority)), &policy
		}
		c.AddChain(nc)
	}
	for _, ch := range t.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: nt}
		for _, r := range ch.Rules {
			nr := &nftables.Rule{Table: nt, Chain: nc, Exprs: r.Exprs()}
			if r.Comment != "" {
				nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
			}
			c.AddRule(nr)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install table inet %s (one transaction, nothing changed): %w", t.Name, err)
	}
	return nil
}

func (s *Set) nft(t *nftables.Table) (*nftables.Set, error) {
	key, err := fieldsType(s.Fields)
	if err != nil {
		return nil, err
	}
	ns := &nftables.Set{
		Table: t, Name: s.Name, KeyType: key,
		Interval: s.Interval, Concatenation: len(s.Fields) > 1,
		Dynamic: s.Dynamic, HasTimeout: s.Timeout > 0, Timeout: s.Timeout,
		Size: s.Size, Comment: s.Comment,
	}
	if len(s.Data) > 0 {
		ns.IsMap = true
		if ns.DataType, err = fieldsType(s.Data); err != nil {
			return nil, err
		}
	}
	if len(s.Fields) == 1 && s.Fields[0].Name == nftables.TypeIFName.Name {
		// Strings are host-endian in nft's type system; without this hint in the set's
		// user data, nft cannot print the elements (it shows "").
		ns.KeyByteOrder = binaryutil.NativeEndian
	}
	return ns, nil
}

// fieldsType is the nft type of a key or data: one datatype or their concatenation.
func fieldsType(fs []Field) (nftables.SetDatatype, error) {
	if len(fs) == 1 {
		return fs[0], nil
	}
	return nftables.ConcatSetType(fs...)
}

func addSet(c *nftables.Conn, t *nftables.Table, s *Set, carried []nftables.SetElement) error {
	ns, err := s.nft(t)
	if err != nil {
		return err
	}
	if err := c.AddSet(ns, nil); err != nil {
		return err
	}
	elems := s.netlinkElems()
	if s.Keep {
		elems = append(elems, carried...)
	}
	for len(elems) > 0 {
		n := min(len(elems), elemChunk)
		if err := c.SetAddElements(ns, elems[:n]); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

// netlinkElems encodes the elements. Single-field interval sets (rbtree) take a
// start element and an exclusive end element flagged INTERVAL_END; concatenated
// interval sets (pipapo) take start and inclusive end in one element.
func (s *Set) netlinkElems() []nftables.SetElement {
	var out []nftables.SetElement
	for _, e := range s.Elems {
		switch {
		case !s.Interval:
			out = append(out, nftables.SetElement{Key: e.Key, Val: e.Val})
		case len(s.Fields) > 1:
			out = append(out, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
		default:
			out = append(out, nftables.SetElement{Key: e.Key})
			if end, ok := increment(e.KeyEnd); ok {
				out = append(out, nftables.SetElement{Key: end, IntervalEnd: true})
			}
		}
	}
	return out
}

// increment returns b+1 as a big-endian number; ok is false on overflow (the range
// reaches the top of the address space and needs no end element).
func increment(b []byte) ([]byte, bool) {
	out := slices.Clone(b)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	return nil, false
}

type carryOver struct {
	counters map[string]*nftables.CounterObj
	elems    map[string][]nftables.SetElement
}

func readCarryOver(c *nftables.Conn, t *Table) (carryOver, error) {
	co := carryOver{counters: map[string]*nftables.CounterObj{}, elems: map[string][]nftables.SetElement{}}
	for _, name := range t.Counters {
		co.counters[name] = &nftables.CounterObj{}
	}
	nt := &nftables.Table{Name: t.Name, Family: family()}
	if _, err := c.ListTableOfFamily(t.Name, family()); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return co, nil
		}
		return co, err
	}
	objs, err := c.GetNamedObjects(nt)
	if err != nil {
		return co, fmt.Errorf("read counters: %w", err)
	}
	for _, o := range objs {
		if name, ctr, ok := counterOf(o); ok {
			if _, wanted := co.counters[name]; wanted {
				co.counters[name] = &nftables.CounterObj{Name: name, Packets: ctr.Packets, Bytes: ctr.Bytes}
			}
		}
	}
	for _, s := range t.Sets {
		if !s.Keep {
			continue
		}
		old, err := c.GetSetByName(nt, s.Name)
		if err != nil {
			continue // the previous table had no such set
		}
		if old.KeyType.Bytes != keyLen(s) || old.IsMap != (len(s.Data) > 0) {
			continue // type changed: nothing to carry
		}
		if dt, err := fieldsType(s.Data); len(s.Data) > 0 && (err != nil || old.DataType.Bytes != dt.Bytes) {
			continue // a map's data type changed
		}
		elems, err := c.GetSetElements(old)
		if err != nil {
			return co, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		var keep []nftables.SetElement
		for _, e := range elems {
			if e.Expires > 0 {
				keep = append(keep, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val, Comment: e.Comment, Timeout: e.Expires})
			}
		}
		if s.Carry != nil {
			keep = s.Carry(keep)
		}
		co.elems[s.Name] = keep
	}
	return co, nil
}

func keyLen(s *Set) uint32 {
	var n uint32
	for _, f := range s.Fields {
		n += (f.Bytes + 3) / 4 * 4
	}
	if len(s.Fields) == 1 {
		return s.Fields[0].Bytes
	}
	return n
}

// Delete removes the table if it exists. It is idempotent.
func Delete(name string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer c.CloseLasting()
	if ok, err := tableExists(c, name); !ok || err != nil {
		return false, err
	}
	c.DelTable(&nftables.Table{Name: name, Family: family()})
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("delete table inet %s: %w", name, err)
	}
	return true, nil
}

// tableExists looks table inet name up without decoding any of its contents.
func tableExists(c *nftables.Conn, name string) (bool, error) {
	if _, err := c.ListTableOfFamily(name, family()); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("look up table inet %s: %w", name, err)
	}
	return true, nil
}
