package firewall

// The DNS-learned part of the table. Host names behind CDNs and wildcard domains
// (*.webex.com) cannot be resolved in advance with the answer the phone will get,
// so the DNS forwarder (package dnsfwd) learns the addresses from the phones' own
// answers and adds them here before it passes the answer on.
//
// Shape: one set per family, keyed like the allowlist `addr . l4proto . dport`,
// flags interval (port ranges such as RTP udp/40000-65000 are one element) and
// timeout (each element carries max(TTL, floor)). The kernel backs a concatenated
// interval set with pipapo, which supports per-element timeouts (measured on 6.18;
// the VM suite runs the same test on Debian's 6.1). The daemon caps the live
// elements (learned_max, evicting the oldest); the set's size is a hard bound above
// that (KernelSetSize): the kernel refuses elements beyond it (ENFILE).
//
// Re-adding an existing element refreshes its timeout on new kernels (6.18) but
// not on 6.1, and overlapping interval elements are refused (EEXIST), so a refresh
// or a change of an address's ports is always "delete the old elements, add the
// new ones" in one batch; the kernel accepts an overlapping add after a delete in
// the same transaction.

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/catalog"
	"github.com/voipgw/voipgw/config"
)

// Names of the learned sets and the DNS interception chain.
const (
	SetLearned4       = "learned4"
	SetLearned6       = "learned6"
	ChainDNSIntercept = "dns_intercept"
)

// DNSSpec is the forwarder's part of the table.
type DNSSpec struct {
	Forwarder  bool
	Gateway4   netip.Addr // phones' DNS to anywhere is redirected here
	Gateway6   netip.Addr // optional
	LearnedMax uint32     // size of each learned set
	TTLFloor   time.Duration
	Rules      []LearnRule // what may be learned: kept entries are re-checked against them
}

// LearnRule is one allowlist destination that is a name: an exact host name or a
// wildcard, with the ports of its allowlist entry.
type LearnRule struct {
	Source string
	Dest   catalog.Dest // DestHost or DestWildcard
	Ports  []catalog.PortRange
}

// dnsSpecFromConfig is the DNS part of SpecFromConfig.
func dnsSpecFromConfig(c *config.Config) DNSSpec {
	f := c.Forwarder
	if !f.Enabled {
		return DNSSpec{}
	}
	d := DNSSpec{Forwarder: true, Gateway4: c.Net.IPv4.Addr(), LearnedMax: f.LearnedMax, TTLFloor: f.TTLFloor, Rules: LearnRules(c)}
	if c.Net.IPv6.IsValid() {
		d.Gateway6 = c.Net.IPv6.Addr()
	}
	return d
}

// LearnRules lists the allowlist's names (hosts and wildcards) with their ports.
func LearnRules(c *config.Config) []LearnRule {
	var out []LearnRule
	for _, a := range c.Allows {
		for _, d := range a.Dests {
			if d.Kind == catalog.DestHost || d.Kind == catalog.DestWildcard {
				out = append(out, LearnRule{Source: a.Source, Dest: d, Ports: a.Ports})
			}
		}
	}
	return out
}

// Matcher answers which ports a DNS name may be learned with.
type Matcher struct {
	exact map[string][]catalog.PortRange
	wild  map[string][]catalog.PortRange // domain below the "*."
}

// NewMatcher indexes the rules.
func NewMatcher(rules []LearnRule) *Matcher {
	m := &Matcher{exact: map[string][]catalog.PortRange{}, wild: map[string][]catalog.PortRange{}}
	for _, r := range rules {
		switch r.Dest.Kind {
		case catalog.DestHost:
			m.exact[r.Dest.Name] = append(m.exact[r.Dest.Name], r.Ports...)
		case catalog.DestWildcard:
			m.wild[r.Dest.Name] = append(m.wild[r.Dest.Name], r.Ports...)
		}
	}
	return m
}

// CanonicalName is a DNS name as the matcher compares it: lower case, no final dot.
func CanonicalName(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// Ports returns the ports name may be learned with (the union over every exact and
// wildcard rule that matches it), or nil. "*.example.com" matches names below
// example.com at any depth, not example.com itself.
func (m *Matcher) Ports(name string) []catalog.PortRange {
	name = CanonicalName(name)
	var out []catalog.PortRange
	out = append(out, m.exact[name]...)
	for rest := name; ; {
		_, after, ok := strings.Cut(rest, ".")
		if !ok {
			break
		}
		out = append(out, m.wild[after]...)
		rest = after
	}
	return UnionPorts(out)
}

// UnionPorts merges port ranges per protocol (sorted, disjoint, adjacent merged).
func UnionPorts(lists ...[]catalog.PortRange) []catalog.PortRange {
	var ps []catalog.PortRange
	for _, l := range lists {
		ps = append(ps, l...)
	}
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, func(a, b catalog.PortRange) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.First, b.First))
	})
	out := ps[:1]
	for _, p := range ps[1:] {
		last := &out[len(out)-1]
		if p.Proto == last.Proto && int(p.First) <= int(last.Last)+1 {
			last.Last = max(last.Last, p.Last)
			continue
		}
		out = append(out, p)
	}
	return out
}

// covers reports whether the ports (a UnionPorts result) include all of r.
func covers(ports []catalog.PortRange, r catalog.PortRange) bool {
	for _, p := range ports {
		if p.Proto == r.Proto && p.First <= r.First && r.Last <= p.Last {
			return true
		}
	}
	return false
}

// KernelSetSize is the size of a learned set for a cap of max live elements. The
// daemon keeps the live elements within max; the kernel counts expired elements
// against the size until its garbage collection (at most once a second, on a
// commit, asynchronous) has removed them (measured on 6.18: a set of size 4 with
// 2 expired elements refused a third live one). Twice the cap absorbs that, and
// the set still has a hard bound.
func KernelSetSize(max uint32) uint32 { return 2 * max }

// addLearned adds the learned sets, their lookups in voip_out and the DNS
// interception to the table. Build calls it last.
func addLearned(t *Table, s Spec) {
	d := s.DNS
	if !d.Forwarder {
		return
	}
	size := d.LearnedMax
	if size == 0 {
		size = config.DefaultLearnedMax
	}
	floor := d.TTLFloor
	if floor <= 0 {
		floor = config.DefaultTTLFloor
	}
	matcher := NewMatcher(d.Rules)
	for _, name := range []string{SetLearned4, SetLearned6} {
		t.Sets = append(t.Sets, &Set{Name: name, Fields: allowFields(name == SetLearned6), Interval: true, Timeout: floor, Size: KernelSetSize(size),
			Keep: true, Carry: carryLearned(matcher, int(size)), Comment: "allowlist: learned from the phones' DNS answers"})
	}
	out := t.chain("voip_out")
	if out == nil || len(out.Rules) == 0 {
		return
	}
	// Phones ask only the forwarder: whatever dnat did not redirect (no IPv6 gateway
	// address, say) must not reach another resolver through a "DNS to anywhere" entry.
	first := slices.IndexFunc(out.Rules, func(r Rule) bool { return strings.Contains(r.Text(), "@"+SetAllow4) })
	if first < 0 {
		first = len(out.Rules) - 1
	}
	block := []Rule{
		rule(dport(unix.IPPROTO_UDP, 53), counterName(CounterNotAllowlisted), drop()),
		rule(dport(unix.IPPROTO_TCP, 53), counterName(CounterNotAllowlisted), drop()),
	}
	out.Rules = slices.Insert(out.Rules, first, block...)
	// The learned lookups go last, just before the final drop.
	last := len(out.Rules) - 1
	out.Rules = slices.Insert(out.Rules, last,
		rule(daddrProtoPortIn(false, SetLearned4), counterName(CounterAllowed), accept()),
		rule(daddrProtoPortIn(true, SetLearned6), counterName(CounterAllowed), accept()),
	)

	// Phones with a resolver of their own configured (8.8.8.8 in a provisioning
	// template is common) are answered by the forwarder all the same: their DNS is
	// redirected to the gateway, so they keep working and their answers are learned.
	var redirect []Rule
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		redirect = append(redirect, rule(iifname(s.VoIPIf, false), metaNfproto(false), dport(proto, 53), dnatTo(d.Gateway4)))
		if d.Gateway6.IsValid() {
			redirect = append(redirect, rule(iifname(s.VoIPIf, false), metaNfproto(true), dport(proto, 53), dnatTo(d.Gateway6)))
		}
	}
	t.Chains = append(t.Chains, &Chain{Name: ChainDNSIntercept, Comment: "phones' DNS to any resolver goes to voipgw's forwarder",
		Hook:  &Hook{Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, HookName: "prerouting", Priority: -100, PrioText: "dstnat"},
		Rules: redirect})
}

func (t *Table) chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// metaNfproto is `meta nfproto ipv4` / `meta nfproto ipv6`.
func metaNfproto(v6 bool) Stmt {
	if v6 {
		return Stmt{Text: "meta nfproto ipv6", Exprs: nfproto(unix.NFPROTO_IPV6)}
	}
	return Stmt{Text: "meta nfproto ipv4", Exprs: nfproto(unix.NFPROTO_IPV4)}
}

// dnatTo is `dnat ip to 192.0.2.1` / `dnat ip6 to 2001:db8::1` (the port is kept).
func dnatTo(a netip.Addr) Stmt {
	fam, kw := uint32(unix.NFPROTO_IPV4), "ip"
	if a.Is6() {
		fam, kw = unix.NFPROTO_IPV6, "ip6"
	}
	return Stmt{Text: fmt.Sprintf("dnat %s to %s", kw, a), Exprs: []expr.Any{
		&expr.Immediate{Register: reg1, Data: a.AsSlice()},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1},
	}}
}

// Learned is what the forwarder learned for one address: the ports of every name
// that led to it, and how long it stays.
type Learned struct {
	Addr    netip.Addr
	Ports   []catalog.PortRange // UnionPorts form
	Names   []string            // the names answered with this address (element comment)
	Timeout time.Duration       // when adding: the element timeout; when read back: time left
}

// maxComment keeps the element comment within the kernel's user data limit (256).
const maxComment = 200

func (l Learned) comment() string {
	var b strings.Builder
	for _, n := range l.Names {
		if b.Len()+len(n)+1 > maxComment {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n)
	}
	return b.String()
}

func learnedSet(a netip.Addr) string {
	if a.Is4() {
		return SetLearned4
	}
	return SetLearned6
}

// Elems are the set elements for l: its ports as disjoint boxes of one address.
func (l Learned) Elems() []nftables.SetElement {
	var allows []Allow
	for _, p := range l.Ports {
		allows = append(allows, Allow{Prefix: netip.PrefixFrom(l.Addr, l.Addr.BitLen()), Port: p})
	}
	boxes := normalize(allows)
	out := make([]nftables.SetElement, 0, len(boxes))
	for _, b := range boxes {
		out = append(out, nftables.SetElement{
			Key:     boxKey(b.Addr.From, uint8(b.Proto), b.Ports[0]),
			KeyEnd:  boxKey(b.Addr.To, uint8(b.Proto), b.Ports[1]),
			Timeout: l.Timeout, Comment: l.comment(),
		})
	}
	return out
}

// decodeLearnedElem reads one element of a learned set back.
func decodeLearnedElem(e nftables.SetElement) (netip.Addr, catalog.PortRange, bool) {
	n := len(e.Key) - 8
	if (n != 4 && n != 16) || len(e.KeyEnd) != len(e.Key) {
		return netip.Addr{}, catalog.PortRange{}, false
	}
	a, _ := netip.AddrFromSlice(e.Key[:n])
	p := catalog.PortRange{Proto: catalog.Proto(e.Key[n]),
		First: uint16(e.Key[n+4])<<8 | uint16(e.Key[n+5]), Last: uint16(e.KeyEnd[n+4])<<8 | uint16(e.KeyEnd[n+5])}
	return a, p, true
}

// groupLearned folds set elements into one Learned per address; Timeout is the
// shortest time left among its elements.
func groupLearned(elems []nftables.SetElement) []Learned {
	by := map[netip.Addr]*Learned{}
	var order []netip.Addr
	for _, e := range elems {
		a, p, ok := decodeLearnedElem(e)
		if !ok {
			continue
		}
		l := by[a]
		if l == nil {
			l = &Learned{Addr: a, Timeout: e.Expires}
			if e.Comment != "" {
				l.Names = strings.Fields(e.Comment)
			}
			by[a] = l
			order = append(order, a)
		}
		l.Ports = append(l.Ports, p)
		l.Timeout = min(l.Timeout, e.Expires)
	}
	out := make([]Learned, 0, len(order))
	for _, a := range order {
		l := by[a]
		l.Ports = UnionPorts(l.Ports)
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b Learned) int { return a.Addr.Compare(b.Addr) })
	return out
}

// carryLearned keeps, across a re-apply, the learned elements that the new config
// still allows: an element stays if its names still match rules whose ports cover
// it. Then at most size elements are kept, those with the most time left.
func carryLearned(m *Matcher, size int) func([]nftables.SetElement) []nftables.SetElement {
	return func(old []nftables.SetElement) []nftables.SetElement {
		var keep []nftables.SetElement
		for _, e := range old {
			_, p, ok := decodeLearnedElem(e)
			if !ok || e.Comment == "" {
				continue
			}
			var ports []catalog.PortRange
			for _, n := range strings.Fields(e.Comment) {
				ports = append(ports, m.Ports(n)...)
			}
			if covers(UnionPorts(ports), p) {
				keep = append(keep, e)
			}
		}
		if len(keep) > size {
			slices.SortFunc(keep, func(a, b nftables.SetElement) int { return cmp.Compare(b.Timeout, a.Timeout) })
			keep = keep[:size]
		}
		return keep
	}
}

// Learner adds and removes learned elements of one table over one lasting netlink
// connection (the forwarder calls it before every answer it passes on).
type Learner struct {
	mu    sync.Mutex
	table string
	conn  *nftables.Conn
}

// NewLearner opens the connection in the current network namespace.
func NewLearner(table string) (*Learner, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	return &Learner{table: table, conn: c}, nil
}

// Close releases the connection.
func (l *Learner) Close() error { return l.conn.CloseLasting() }

func (l *Learner) set(name string) *nftables.Set {
	return &nftables.Set{Table: &nftables.Table{Name: l.table, Family: family()}, Name: name,
		Interval: true, Concatenation: true, HasTimeout: true}
}

// Change replaces what the kernel has for one address: Old's elements (as the
// caller believes them present; nil for none) are deleted and New's added (nil:
// only delete).
type Change struct {
	Old, New *Learned
}

// Update applies the changes in one batch. If the kernel no longer has an element
// the caller believed present (it expired a moment ago), the batch is retried with
// the deletes of what the kernel really has for those addresses.
func (l *Learner) Update(changes []Change) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(changes) == 0 {
		return nil
	}
	err := l.batch(changes)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return err
	}
	present, rerr := l.readLocked()
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	by := map[netip.Addr]Learned{}
	for _, p := range present {
		by[p.Addr] = p
	}
	fixed := make([]Change, 0, len(changes))
	for _, c := range changes {
		a := c.New
		if a == nil {
			a = c.Old
		}
		if a == nil {
			continue
		}
		var old *Learned
		if p, ok := by[a.Addr]; ok {
			old = &p
		}
		fixed = append(fixed, Change{Old: old, New: c.New})
	}
	return l.batch(fixed)
}

func (l *Learner) batch(changes []Change) error {
	for _, c := range changes {
		if c.Old != nil {
			if err := l.conn.SetDeleteElements(l.set(learnedSet(c.Old.Addr)), c.Old.Elems()); err != nil {
				return err
			}
		}
		if c.New != nil {
			if c.New.Timeout < time.Millisecond {
				return fmt.Errorf("learned %s: timeout %v too short", c.New.Addr, c.New.Timeout)
			}
			if err := l.conn.SetAddElements(l.set(learnedSet(c.New.Addr)), c.New.Elems()); err != nil {
				return err
			}
		}
	}
	if err := l.conn.Flush(); err != nil {
		return fmt.Errorf("update learned sets of inet %s: %w", l.table, err)
	}
	return nil
}

// Read returns what the kernel has in the learned sets, one Learned per address
// with the time left.
func (l *Learner) Read() ([]Learned, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.readLocked()
}

func (l *Learner) readLocked() ([]Learned, error) {
	var elems []nftables.SetElement
	for _, name := range []string{SetLearned4, SetLearned6} {
		s, err := l.conn.GetSetByName(&nftables.Table{Name: l.table, Family: family()}, name)
		if err != nil {
			return nil, fmt.Errorf("set %s of inet %s: %w", name, l.table, err)
		}
		e, err := l.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("read set %s: %w", name, err)
		}
		elems = append(elems, e...)
	}
	return groupLearned(elems), nil
}
