package firewall

// The diff of Apply: what the kernel has of the table against what Build made.
// It knows nothing of what the sets and chains are for; it compares generic data:
//
//   - Structure: the table's objects (counters, ct timeouts), sets and chains, in
//     order, each by the attributes that define it (a set's type, flags, timeout,
//     size and user data such as its comment; a base chain's hook, priority, type
//     and policy). The desired side is what google/nftables would send for the
//     Table (captured, not sent), the kernel side its dump: both are compared in
//     the same netlink encoding. Any difference is a structure change.
//   - Rules: each rule carries a fingerprint of its expressions and comment in its
//     user data (fpType); a chain whose fingerprints differ from the desired ones,
//     in order, has its rules replaced.
//   - Elements: compared by key, key end, data and interval-end flag. Keep sets
//     keep what Carry picks of the kernel's elements; the rest is deleted.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink attribute numbers golang.org/x/sys/unix does not define
// (include/uapi/linux/netfilter/nf_tables.h).
const (
	nftaCtTimeoutL3Proto = 1
	nftaCtTimeoutL4Proto = 2
	nftaCtTimeoutData    = 3
	nftaSetElemKeyEnd    = 10
)

// fpType is the user data type of the rule fingerprint. nft reads only the comment
// (type 0) of a rule's user data and skips other types, so `nft list` is unchanged.
const fpType userdata.Type = 0x76

// ruleUserData is a rule's user data: its comment (if any) and its fingerprint.
func ruleUserData(r Rule) ([]byte, error) {
	var ud []byte
	if r.Comment != "" {
		ud = userdata.AppendString(ud, userdata.TypeComment, r.Comment)
	}
	fp, err := ruleFingerprint(r)
	if err != nil {
		return nil, err
	}
	return userdata.Append(ud, fpType, fp), nil
}

// ruleFingerprint is a hash of the rule's netlink expressions and comment: equal
// fingerprints mean the kernel's rule was made from the same expressions.
func ruleFingerprint(r Rule) ([]byte, error) {
	h := sha256.New()
	for _, e := range r.Exprs() {
		b, err := expr.Marshal(byte(family()), e)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Text(), err)
		}
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		h.Write(b)
	}
	h.Write([]byte(r.Comment))
	return h.Sum(nil)[:16], nil
}

// item is one object, set or chain: its kind and name and the attributes that
// define it (sig), in a canonical encoding.
type item struct {
	kind, name, sig string
	keys            string // sets: key and data length, map or not (what a carry-over needs unchanged)
}

// shape is a table's structure and its rules.
type shape struct {
	flags uint32 // table flags (dormant)
	items []item
	rules map[string][]string // chain: rule fingerprints in order ("" for a rule without one)
}

func (a *shape) sameStructure(b *shape) bool {
	return a.flags == b.flags && slices.Equal(a.items, b.items)
}

// setKeys is the keys of set name ("" if there is no such set).
func (a *shape) setKeys(name string) string {
	for _, it := range a.items {
		if it.kind == "set" && it.name == name {
			return it.keys
		}
	}
	return ""
}

// sigOf encodes the attributes of types in b in the given order; absent ones are
// marked absent, so that a missing attribute never equals an empty one.
func sigOf(b []byte, types ...uint16) string {
	var s strings.Builder
	for _, t := range types {
		v := attrOf(b, t)
		if v == nil {
			s.WriteString("-|")
			continue
		}
		fmt.Fprintf(&s, "%d:%x|", t, v)
	}
	return s.String()
}

// itemOf reads an object, set or chain message (NEWOBJ/NEWSET/NEWCHAIN attributes,
// from a dump or from a request).
func itemOf(msg uint16, attrs []byte) (item, bool) {
	switch msg {
	case unix.NFT_MSG_NEWOBJ:
		name := cString(attrOf(attrs, unix.NFTA_OBJ_NAME))
		typ := be32(attrOf(attrs, unix.NFTA_OBJ_TYPE))
		data := attrOf(attrs, unix.NFTA_OBJ_DATA)
		switch typ {
		case unix.NFT_OBJECT_COUNTER:
			return item{kind: "counter", name: name}, true // values are state, carried
		case unix.NFT_OBJECT_CT_TIMEOUT:
			// The policy is a nested list whose order google/nftables takes from a map.
			var pol []string
			eachAttr(attrOf(data, nftaCtTimeoutData), func(t uint16, v []byte) { pol = append(pol, fmt.Sprintf("%d:%x", t, v)) })
			slices.Sort(pol)
			return item{kind: "ct timeout", name: name, sig: sigOf(data, nftaCtTimeoutL3Proto, nftaCtTimeoutL4Proto) + strings.Join(pol, ",")}, true
		case unix.NFT_OBJECT_CT_EXPECT:
			// By attribute: the kernel dumps l3proto first, google/nftables sends it last.
			return item{kind: "ct expectation", name: name, sig: sigOf(data, expr.NFTA_CT_EXPECT_L3PROTO, expr.NFTA_CT_EXPECT_L4PROTO,
				expr.NFTA_CT_EXPECT_DPORT, expr.NFTA_CT_EXPECT_TIMEOUT, expr.NFTA_CT_EXPECT_SIZE)}, true
		}
		return item{kind: fmt.Sprintf("object %d", typ), name: name, sig: fmt.Sprintf("%x", data)}, true
	case unix.NFT_MSG_NEWSET:
		name := cString(attrOf(attrs, unix.NFTA_SET_NAME))
		size := attrOf(attrOf(attrs, unix.NFTA_SET_DESC), unix.NFTA_SET_DESC_SIZE)
		flags := be32(attrOf(attrs, unix.NFTA_SET_FLAGS))
		if len(size) == 0 && flags&unix.NFT_SET_EVAL != 0 {
			// A dynamic set sent without a size has the kernel's default cap once a
			// rule binds it (Set.nft leaves that size out on purpose).
			size = binary.BigEndian.AppendUint32(nil, DynsetDefaultSize)
		}
		return item{kind: "set", name: name,
			// The kernel leaves out flags that are 0; google/nftables sends them.
			sig: fmt.Sprintf("flags:%x|", flags) + sigOf(attrs, unix.NFTA_SET_KEY_TYPE, unix.NFTA_SET_KEY_LEN,
				unix.NFTA_SET_DATA_TYPE, unix.NFTA_SET_DATA_LEN, unix.NFTA_SET_TIMEOUT, unix.NFTA_SET_USERDATA) + fmt.Sprintf("size:%x", size),
			keys: sigOf(attrs, unix.NFTA_SET_KEY_LEN, unix.NFTA_SET_DATA_LEN) + fmt.Sprint(flags&unix.NFT_SET_MAP != 0)}, true
	case unix.NFT_MSG_NEWCHAIN:
		name := cString(attrOf(attrs, unix.NFTA_CHAIN_NAME))
		hook := attrOf(attrs, unix.NFTA_CHAIN_HOOK)
		return item{kind: "chain", name: name, sig: sigOf(hook, unix.NFTA_HOOK_HOOKNUM, unix.NFTA_HOOK_PRIORITY) +
			sigOf(attrs, unix.NFTA_CHAIN_POLICY, unix.NFTA_CHAIN_TYPE)}, true
	}
	return item{}, false
}

// wantShape is the desired table's shape: the structure messages google/nftables
// would send for t, captured on a test connection, read like a dump.
func wantShape(t *Table) (*shape, error) {
	var msgs []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		for _, m := range req {
			m.Data = bytes.Clone(m.Data) // the test connection reuses its buffer
			msgs = append(msgs, m)
		}
		return nil, nil
	}))
	if err != nil {
		return nil, err
	}
	nt := &nftables.Table{Name: t.Name, Family: family()}
	c.AddTable(nt)
	addObjects(c, nt, t, nil)
	for _, s := range t.Sets {
		ns, err := s.nft(nt)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		if err := c.AddSet(ns, nil); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	for _, ch := range t.Chains {
		c.AddChain(ch.nft(nt))
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("encode table: %w", err)
	}
	sh := &shape{rules: map[string][]string{}}
	for _, m := range msgs {
		if len(m.Data) < 4 || uint16(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES {
			continue // batch begin/end
		}
		if it, ok := itemOf(uint16(m.Header.Type)&0xff, m.Data[4:]); ok {
			sh.items = append(sh.items, it)
		}
	}
	for _, ch := range t.Chains {
		fps := make([]string, 0, len(ch.Rules))
		for _, r := range ch.Rules {
			fp, err := ruleFingerprint(r)
			if err != nil {
				return nil, err
			}
			fps = append(fps, string(fp))
		}
		sh.rules[ch.Name] = fps
	}
	return sh, nil
}

// kernelState is what the kernel has of the table, as far as Apply needs it.
type kernelState struct {
	shape
	counters map[string]nftables.CounterObj
}

// readKernel reads the table's shape and counter values; nil if there is no table.
func readKernel(d *nlDumper, table string) (*kernelState, error) {
	for try := 0; ; try++ {
		k, err := readKernelOnce(d, table)
		if errors.Is(err, errDumpInterrupted) && try < 3 {
			continue // changed while read: read again
		}
		return k, err
	}
}

func readKernelOnce(d *nlDumper, table string) (*kernelState, error) {
	k := &kernelState{shape: shape{rules: map[string][]string{}}, counters: map[string]nftables.CounterObj{}}
	found := false
	err := d.dump(unix.NFT_MSG_GETTABLE, byte(family()), nil, func(a []byte) error {
		if cString(attrOf(a, unix.NFTA_TABLE_NAME)) == table {
			found = true
			k.flags = be32(attrOf(a, unix.NFTA_TABLE_FLAGS))
		}
		return nil
	})
	if err != nil || !found {
		return nil, err
	}
	tableAttr := func(typ uint16) []byte { return nlAttr(nil, typ, nlString(table)) }
	err = d.dump(unix.NFT_MSG_GETOBJ, byte(family()), tableAttr(unix.NFTA_OBJ_TABLE), func(a []byte) error {
		it, _ := itemOf(unix.NFT_MSG_NEWOBJ, a)
		k.items = append(k.items, it)
		if it.kind == "counter" {
			data := attrOf(a, unix.NFTA_OBJ_DATA)
			k.counters[it.name] = nftables.CounterObj{Name: it.name,
				Bytes: be64(attrOf(data, unix.NFTA_COUNTER_BYTES)), Packets: be64(attrOf(data, unix.NFTA_COUNTER_PACKETS))}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read objects: %w", err)
	}
	err = d.dump(unix.NFT_MSG_GETSET, byte(family()), tableAttr(unix.NFTA_SET_TABLE), func(a []byte) error {
		it, _ := itemOf(unix.NFT_MSG_NEWSET, a)
		k.items = append(k.items, it)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read sets: %w", err)
	}
	// Chains: older kernels ignore a table in a chain dump, so filter here.
	err = d.dump(unix.NFT_MSG_GETCHAIN, byte(family()), nil, func(a []byte) error {
		if cString(attrOf(a, unix.NFTA_CHAIN_TABLE)) != table {
			return nil
		}
		it, _ := itemOf(unix.NFT_MSG_NEWCHAIN, a)
		k.items = append(k.items, it)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read chains: %w", err)
	}
	err = d.dump(unix.NFT_MSG_GETRULE, byte(family()), tableAttr(unix.NFTA_RULE_TABLE), func(a []byte) error {
		if cString(attrOf(a, unix.NFTA_RULE_TABLE)) != table {
			return nil
		}
		chain := cString(attrOf(a, unix.NFTA_RULE_CHAIN))
		fp := userdata.Get(attrOf(a, unix.NFTA_RULE_USERDATA), fpType)
		k.rules[chain] = append(k.rules[chain], string(fp))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return k, nil
}

// be32 and be64 read big-endian numbers; 0 if the attribute is absent or short.
func be32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func be64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// kElem is one element of a set dump; its slices point into the dump buffer and
// are valid only during the callback.
type kElem struct {
	key, keyEnd, val []byte
	intervalEnd      bool
	expires, timeout time.Duration
	comment          []byte // user data
}

// id encodes what identifies an element: key, key end, data and interval-end flag.
func elemID(key, keyEnd, val []byte, intervalEnd bool) string {
	return string(appendElemID(make([]byte, 0, 4+len(key)+len(keyEnd)+len(val)), key, keyEnd, val, intervalEnd))
}

func appendElemID(b, key, keyEnd, val []byte, intervalEnd bool) []byte {
	b = append(append(b, byte(len(key))), key...)
	b = append(append(b, byte(len(keyEnd))), keyEnd...)
	b = append(append(b, byte(len(val))), val...)
	if intervalEnd {
		return append(b, 1)
	}
	return append(b, 0)
}

// elemOfID is the element an id describes (for adds and deletes).
func elemOfID(id string) nftables.SetElement {
	b := []byte(id)
	next := func() []byte {
		n := int(b[0])
		v := b[1 : 1+n]
		b = b[1+n:]
		if n == 0 {
			return nil
		}
		return v
	}
	e := nftables.SetElement{Key: next(), KeyEnd: next(), Val: next()}
	e.IntervalEnd = b[0] == 1
	return e
}

// readElems walks the elements of one set.
func readElems(d *nlDumper, table, set string, fn func(e *kElem)) error {
	attrs := nlAttr(nlAttr(nil, unix.NFTA_SET_ELEM_LIST_TABLE, nlString(table)), unix.NFTA_SET_ELEM_LIST_SET, nlString(set))
	var e kElem
	return d.dump(unix.NFT_MSG_GETSETELEM, byte(family()), attrs, func(a []byte) error {
		eachAttr(attrOf(a, unix.NFTA_SET_ELEM_LIST_ELEMENTS), func(_ uint16, el []byte) {
			e = kElem{}
			eachAttr(el, func(t uint16, v []byte) {
				switch t {
				case unix.NFTA_SET_ELEM_KEY:
					e.key = attrOf(v, unix.NFTA_DATA_VALUE)
				case nftaSetElemKeyEnd:
					e.keyEnd = attrOf(v, unix.NFTA_DATA_VALUE)
				case unix.NFTA_SET_ELEM_DATA:
					e.val = attrOf(v, unix.NFTA_DATA_VALUE)
				case unix.NFTA_SET_ELEM_FLAGS:
					e.intervalEnd = len(v) == 4 && binary.BigEndian.Uint32(v)&unix.NFT_SET_ELEM_INTERVAL_END != 0
				case unix.NFTA_SET_ELEM_TIMEOUT:
					e.timeout = time.Duration(be64(v)) * time.Millisecond
				case unix.NFTA_SET_ELEM_EXPIRATION:
					e.expires = time.Duration(be64(v)) * time.Millisecond
				case unix.NFTA_SET_ELEM_USERDATA:
					e.comment = v
				}
			})
			fn(&e)
		})
		return nil
	})
}

// elemDiff is what to delete from and add to one set, as ids.
type elemDiff struct {
	del, add []string
}

// diffElems compares the kernel's elements of set s with the desired ones: the
// set's own elements plus, for a Keep set, what its Carry keeps of the kernel's.
func diffElems(d *nlDumper, table string, s *Set) (elemDiff, error) {
	var have []string
	var carried []nftables.SetElement
	err := readElems(d, table, s.Name, func(e *kElem) {
		have = append(have, elemID(e.key, e.keyEnd, e.val, e.intervalEnd))
		if s.Keep && e.expires > 0 {
			c, _ := userdata.GetString(e.comment, userdata.TypeComment)
			carried = append(carried, nftables.SetElement{Key: bytes.Clone(e.key), KeyEnd: bytes.Clone(e.keyEnd),
				Val: bytes.Clone(e.val), Comment: c, Timeout: e.expires, Expires: e.expires})
		}
	})
	if err != nil {
		return elemDiff{}, fmt.Errorf("read set %s: %w", s.Name, err)
	}
	// The desired elements are looked up in the sorted kernel ids one by one
	// rather than collected and sorted too: for 100 000 elements that is 3 MB less
	// at the moment apply needs the most.
	sort.Strings(have)
	found := make([]bool, len(have))
	var out elemDiff
	var buf []byte
	want := func(e nftables.SetElement) {
		buf = appendElemID(buf[:0], e.Key, e.KeyEnd, e.Val, e.IntervalEnd)
		i := sort.Search(len(have), func(i int) bool { return have[i] >= string(buf) })
		if i < len(have) && have[i] == string(buf) {
			found[i] = true
		} else {
			out.add = append(out.add, string(buf))
		}
	}
	s.eachElem(want)
	if s.Keep {
		if s.Carry != nil {
			carried = s.Carry(carried)
		}
		for _, e := range carried {
			want(e)
		}
	}
	slices.Sort(out.add)
	out.add = slices.Compact(out.add)
	for i, id := range have {
		if !found[i] {
			out.del = append(out.del, id)
		}
	}
	return out, nil
}
