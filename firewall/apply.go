package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/voipgw/voipgw/nfhold"
	"golang.org/x/sys/unix"
)

// elemChunk bounds the elements per netlink message: the element list is one
// netlink attribute whose length field is 16 bits, so a large allowlist must be
// split into several messages (all still inside the one batch).
const elemChunk = 512

func family() nftables.TableFamily { return nftables.TableFamilyINet }

// Changes is what an apply did to the kernel's table.
type Changes struct {
	Replaced       bool     // the whole table was replaced (new, or its structure changed)
	ElemsAdded     int      // elements added to sets of the existing table
	ElemsDeleted   int      // elements deleted from them
	ChainsReplaced []string // chains of the existing table whose rules were replaced
}

// None reports that the kernel already had the table: nothing was sent.
func (c Changes) None() bool {
	return !c.Replaced && c.ElemsAdded == 0 && c.ElemsDeleted == 0 && len(c.ChainsReplaced) == 0
}

func (c Changes) String() string {
	switch {
	case c.Replaced:
		return "table replaced"
	case c.None():
		return "unchanged"
	}
	return fmt.Sprintf("%d elements added, %d deleted, rules of %d chains replaced %v", c.ElemsAdded, c.ElemsDeleted, len(c.ChainsReplaced), c.ChainsReplaced)
}

// Apply installs t; see Update.
func Apply(t *Table) error {
	_, err := Update(t)
	return err
}

// Update brings the kernel's table to t; see UpdateHolding. Its netlink sockets
// are closed before it returns: after a commit that deleted something that waits
// out an RCU grace period (package nfhold).
func Update(t *Table) (Changes, error) { return UpdateHolding(t, nil) }

// UpdateHolding brings the kernel's table to t in ONE netlink transaction: packets see
// either the old or the new ruleset, never a moment without rules, and if the
// kernel rejects anything, nothing changes.
//
// It diffs the kernel's table against t (diff.go). If the structure is the same
// (objects, sets, chains and their attributes) only the differences are sent:
// element adds and deletes, and the rules of chains whose rules differ. Nothing at
// all is sent when nothing differs. Otherwise the table is replaced: the previous
// one deleted and t created in the same transaction, counter values and the
// elements of Keep sets carried over with their remaining timeouts. Should the
// kernel refuse the update (an element expired between the read and the commit),
// the table is replaced instead.
//
// Its netlink sockets go to h (nil: closed before it returns). The commit is
// complete when UpdateHolding returns; closing the sockets later lets the caller
// do other work while the kernel waits to free what the commit deleted.
func UpdateHolding(t *Table, h *nfhold.Holder) (Changes, error) {
	d, err := openDumper()
	if err != nil {
		return Changes{}, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer h.Close(nfhold.Func(d.close))
	have, err := readKernel(d, t.Name)
	if err != nil {
		return Changes{}, fmt.Errorf("read table inet %s: %w", t.Name, err)
	}
	var want *shape
	if have != nil {
		if want, err = wantShape(t); err != nil {
			return Changes{}, err
		}
		if have.sameStructure(want) {
			ch, err := update(d, h, t, have, want)
			var refused *refusedError
			if !errors.As(err, &refused) {
				return ch, err
			}
		}
	}
	return Changes{Replaced: true}, replace(d, h, t, have, want)
}

// refusedError is a batch the kernel did not commit.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// newConn opens the connection for the batch: one socket for the whole batch and
// its acks (lasting: google/nftables would otherwise open and close a socket in
// Flush, and that close waits for the kernel to free what the batch deleted),
// closed by the caller. The batch goes out in one sendmsg,
// which the kernel refuses (EMSGSIZE) beyond the socket's send buffer (default
// about 200 KB: some 7 000 allowlist elements), and its acks (one per message)
// overflow the default receive buffer (ENOBUFS after the commit) near 100 000.
// Raise both as nft does (SO_SNDBUFFORCE / SO_RCVBUFFORCE as root; bounds, not
// allocations).
func newConn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(nc *netlink.Conn) error {
		return errors.Join(nc.SetWriteBuffer(64<<20), nc.SetReadBuffer(16<<20))
	}))
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	return c, nil
}

// update sends the differences of a table whose structure is unchanged.
func update(d *nlDumper, h *nfhold.Holder, t *Table, have *kernelState, want *shape) (Changes, error) {
	var ch Changes
	c, err := newConn()
	if err != nil {
		return ch, err
	}
	defer h.Close(nfhold.Func(c.CloseLasting))
	nt := &nftables.Table{Name: t.Name, Family: family()}
	for _, s := range t.Sets {
		if keepsAsIs(s) {
			continue
		}
		diff, err := diffElems(d, t.Name, s)
		if err != nil {
			return ch, err
		}
		if len(diff.del)+len(diff.add) == 0 {
			continue
		}
		ns, err := s.nft(nt)
		if err != nil {
			return ch, fmt.Errorf("set %s: %w", s.Name, err)
		}
		// Deletes first: an interval element may be re-added overlapping a deleted one.
		if err := sendElems(diff.del, true, func(es []nftables.SetElement) error { return c.SetDeleteElements(ns, es) }); err != nil {
			return ch, fmt.Errorf("set %s: %w", s.Name, err)
		}
		if err := sendElems(diff.add, false, func(es []nftables.SetElement) error { return c.SetAddElements(ns, es) }); err != nil {
			return ch, fmt.Errorf("set %s: %w", s.Name, err)
		}
		ch.ElemsDeleted += len(diff.del)
		ch.ElemsAdded += len(diff.add)
	}
	for _, chain := range t.Chains {
		if slices.Equal(have.rules[chain.Name], want.rules[chain.Name]) {
			continue
		}
		nc := chain.nft(nt)
		c.FlushChain(nc)
		if err := addRules(c, nt, chain); err != nil {
			return ch, err
		}
		ch.ChainsReplaced = append(ch.ChainsReplaced, chain.Name)
	}
	if ch.None() {
		return ch, nil
	}
	if err := c.Flush(); err != nil {
		return ch, &refusedError{fmt.Errorf("update table inet %s (one transaction, nothing changed): %w", t.Name, err)}
	}
	return ch, nil
}

// keepsAsIs: a Keep set without Carry, without elements of its own and with a
// default timeout (the scanners) needs no diff, so its elements are not read:
// the diff keeps every element that has a timeout, which with a default timeout
// is every element (the packet path and nft give them one), and has nothing to
// add. Reading is not free: the kernel sizes a hash set's buckets for its declared
// size (65 535 here), and a dump walks them all, 0.3 ms even when empty.
func keepsAsIs(s *Set) bool {
	return s.Keep && s.Carry == nil && s.Timeout > 0 && len(s.Elems) == 0 && len(s.Packed) == 0
}

// sendElems queues elements given as ids in chunks. Deletes leave out a map
// element's data: the key identifies it.
func sendElems(ids []string, del bool, queue func([]nftables.SetElement) error) error {
	for len(ids) > 0 {
		n := min(len(ids), elemChunk)
		es := make([]nftables.SetElement, n)
		for i, id := range ids[:n] {
			es[i] = elemOfID(id)
			if del {
				es[i].Val = nil
			}
		}
		if err := queue(es); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// replace deletes the table (if have says there is one) and creates t in one
// batch, carrying counter values and Keep sets' elements from the kernel.
func replace(d *nlDumper, h *nfhold.Holder, t *Table, have *kernelState, want *shape) error {
	var counters map[string]nftables.CounterObj
	carried := map[string][]nftables.SetElement{}
	if have != nil {
		counters = have.counters
		var err error
		if carried, err = readCarried(d, t, have, want); err != nil {
			return fmt.Errorf("read previous table %s: %w", t.Name, err)
		}
	}
	c, err := newConn()
	if err != nil {
		return err
	}
	defer h.Close(nfhold.Func(c.CloseLasting))

	nt := &nftables.Table{Name: t.Name, Family: family()}
	c.AddTable(nt)
	c.DelTable(nt)
	c.AddTable(nt)
	addObjects(c, nt, t, counters)
	for _, s := range t.Sets {
		if err := addSet(c, nt, s, carried[s.Name]); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	for _, ch := range t.Chains {
		c.AddChain(ch.nft(nt))
	}
	for _, ch := range t.Chains {
		if err := addRules(c, nt, ch); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install table inet %s (one transaction, nothing changed): %w", t.Name, err)
	}
	return nil
}

// addObjects queues the counters (with the given values) and ct timeouts.
func addObjects(c *nftables.Conn, nt *nftables.Table, t *Table, counters map[string]nftables.CounterObj) {
	for _, name := range t.Counters {
		ctr := counters[name]
		c.AddObj(&nftables.CounterObj{Table: nt, Name: name, Bytes: ctr.Bytes, Packets: ctr.Packets})
	}
	addCtTimeouts(c, nt, t) // sip.go
	if t.NoOffload {
		c.AddObj(noOffloadObj(nt))
	}
}

// nft is the chain for google/nftables.
func (ch *Chain) nft(nt *nftables.Table) *nftables.Chain {
	nc := &nftables.Chain{Name: ch.Name, Table: nt}
	if h := ch.Hook; h != nil {
		policy := nftables.ChainPolicyAccept
		nc.Type, nc.Hooknum, nc.Priority, nc.Policy = h.Type, h.Hooknum, nftables.ChainPriorityRef(nftables.ChainPriority(h.Priority)), &policy
	}
	return nc
}

// addRules queues the chain's rules, each with its fingerprint (diff.go).
func addRules(c *nftables.Conn, nt *nftables.Table, ch *Chain) error {
	nc := &nftables.Chain{Name: ch.Name, Table: nt}
	for _, r := range ch.Rules {
		ud, err := ruleUserData(r)
		if err != nil {
			return fmt.Errorf("chain %s: %w", ch.Name, err)
		}
		c.AddRule(&nftables.Rule{Table: nt, Chain: nc, Exprs: r.Exprs(), UserData: ud})
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
	if s.Dynamic && s.Size == DynsetDefaultSize {
		// The same cap without its cost: a size sent with the set makes the kernel
		// allocate the hash table for it up front (65 535 elements: about 2 MiB of
		// kernel memory per set, measured), while a dynamic set sent without one
		// starts small, grows with its elements and gets this cap from the kernel
		// when a rule binds it (the listing shows `size 65535` either way).
		ns.Size = 0
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
	// Encoded a chunk at a time: only the netlink messages stay in memory, not a
	// decoded element per entry as well (100 000 of them are ~20 MB).
	chunk := make([]nftables.SetElement, 0, elemChunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := c.SetAddElements(ns, chunk)
		chunk = chunk[:0]
		return err
	}
	var ferr error
	s.eachElem(func(e nftables.SetElement) {
		if ferr != nil {
			return
		}
		if chunk = append(chunk, e); len(chunk) == elemChunk {
			ferr = flush()
		}
	})
	if ferr != nil {
		return ferr
	}
	if s.Keep {
		for _, e := range carried {
			if chunk = append(chunk, e); len(chunk) == elemChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// eachElem calls fn with each element as netlink encodes it. Single-field interval
// sets (rbtree) take a start element and an exclusive end element flagged
// INTERVAL_END; concatenated interval sets (pipapo) take start and inclusive end
// in one element.
func (s *Set) eachElem(fn func(nftables.SetElement)) {
	defer func() {
		if n := s.keySize(); n > 0 {
			for i := 0; i+n <= len(s.Packed); i += n {
				fn(nftables.SetElement{Key: s.Packed[i : i+n : i+n]})
			}
		}
	}()
	for _, e := range s.Elems {
		switch {
		case !s.Interval:
			fn(nftables.SetElement{Key: e.Key, Val: e.Val})
		case len(s.Fields) > 1:
			fn(nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
		default:
			fn(nftables.SetElement{Key: e.Key})
			if end, ok := increment(e.KeyEnd); ok {
				fn(nftables.SetElement{Key: end, IntervalEnd: true})
			}
		}
	}
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

// readCarried reads the elements of the Keep sets that a replace carries over:
// those with a timeout, of sets whose key and data length are unchanged, as their
// Carry picks them.
func readCarried(d *nlDumper, t *Table, have *kernelState, want *shape) (map[string][]nftables.SetElement, error) {
	out := map[string][]nftables.SetElement{}
	for _, s := range t.Sets {
		if !s.Keep || have.setKeys(s.Name) == "" {
			continue // the previous table had no such set
		}
		if have.setKeys(s.Name) != want.setKeys(s.Name) {
			continue // type changed: nothing to carry
		}
		var keep []nftables.SetElement
		err := readElems(d, t.Name, s.Name, func(e *kElem) {
			if e.expires > 0 {
				c, _ := userdata.GetString(e.comment, userdata.TypeComment)
				keep = append(keep, nftables.SetElement{Key: bytes.Clone(e.key), KeyEnd: bytes.Clone(e.keyEnd),
					Val: bytes.Clone(e.val), Comment: c, Timeout: e.expires})
			}
		})
		if err != nil {
			return nil, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		if s.Carry != nil {
			keep = s.Carry(keep)
		}
		out[s.Name] = keep
	}
	return out, nil
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
