package firewall

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/voipgw/voipgw/catalog"
)

// Allow is one allowlist entry after name resolution: phones may open new flows
// to addresses in Prefix with this protocol and destination port range.
type Allow struct {
	Prefix netip.Prefix
	Port   catalog.PortRange
}

// AddrRange is an inclusive address range; a Box is one non-overlapping element of
// an `addr . proto . port` interval set.
type AddrRange struct{ From, To netip.Addr }

type Box struct {
	Addr  AddrRange
	Proto catalog.Proto
	Ports [2]uint16 // inclusive
}

// exact reports whether the box is one address and one port: such elements go to the
// hash set, everything else to the interval (pipapo) set.
func (b Box) exact() bool { return b.Addr.From == b.Addr.To && b.Ports[0] == b.Ports[1] }

func prefixRange(p netip.Prefix) AddrRange {
	p = p.Masked()
	from := p.Addr()
	to := from.AsSlice()
	for i := p.Bits(); i < len(to)*8; i++ {
		to[i/8] |= 0x80 >> (i % 8)
	}
	end, _ := netip.AddrFromSlice(to)
	return AddrRange{From: from, To: end}
}

// normalize turns possibly overlapping allow entries of one address family into
// disjoint boxes: the kernel rejects overlapping elements in interval sets (EEXIST),
// and the catalog overlaps by nature (DNS to anywhere vs. DNS to a Webex subnet,
// one host listed by two profiles).
//
// It sweeps the port axis per protocol: between consecutive port breakpoints the set
// of covering entries is constant, so the addresses allowed there are the union of
// their ranges. Neighbouring port slices with identical address unions are merged
// again. The result is deterministic (sorted) and, for the usual catalog of single
// hosts with a few ports each, no larger than the input.
func normalize(allows []Allow) []Box { return normalizeIf(allows, nil) }

// normalizeIf is normalize of the entries keep accepts (nil: all). Build passes
// one family at a time without copying the allowlist first (100 000 entries are
// 4 MB per copy).
func normalizeIf(allows []Allow, keep func(Allow) bool) []Box {
	// Per protocol, the indices of its entries (not copies: 100 000 entries are
	// 4 MB per copy), sorted by first port.
	byProto := map[catalog.Proto][]int32{}
	total := 0
	for i, a := range allows {
		if keep == nil || keep(a) {
			byProto[a.Port.Proto] = append(byProto[a.Port.Proto], int32(i))
			total++
		}
	}
	protos := make([]catalog.Proto, 0, len(byProto))
	for p := range byProto {
		protos = append(protos, p)
	}
	slices.Sort(protos)

	out := make([]Box, 0, total) // exact entries make one box each; often most of them
	for _, proto := range protos {
		entries := byProto[proto]
		// Breakpoints: every First and Last+1.
		cuts := make([]int, 0, 2*len(entries))
		for _, i := range entries {
			cuts = append(cuts, int(allows[i].Port.First), int(allows[i].Port.Last)+1)
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)

		// The entries covering a slice are those begun at or before it and not
		// ended before it (every Last+1 is a cut, so such an entry covers the whole
		// slice). Walking the slices with the entries sorted by First keeps only
		// those in hand: testing every entry against every slice was quadratic
		// (100 000 entries: 0.5 s). A slice is held back until the next one shows
		// whether the two merge.
		slices.SortFunc(entries, func(a, b int32) int { return cmp.Compare(allows[a].Port.First, allows[b].Port.First) })
		var pending struct {
			from, to int
			addrs    []AddrRange
		}
		emit := func() {
			for _, r := range pending.addrs {
				out = append(out, Box{Addr: r, Proto: proto, Ports: [2]uint16{uint16(pending.from), uint16(pending.to)}})
			}
			pending.addrs = nil
		}
		next := 0
		var active []int32
		for i := 0; i+1 < len(cuts); i++ {
			from, to := cuts[i], cuts[i+1]-1
			for next < len(entries) && int(allows[entries[next]].Port.First) <= from {
				active = append(active, entries[next])
				next++
			}
			active = slices.DeleteFunc(active, func(e int32) bool { return int(allows[e].Port.Last) < from })
			if len(active) == 0 {
				continue
			}
			rs := make([]AddrRange, len(active))
			for i, e := range active {
				rs[i] = prefixRange(allows[e].Prefix)
			}
			rs = unionRanges(rs)
			if pending.addrs != nil && pending.to+1 == from && slices.Equal(pending.addrs, rs) {
				pending.to = to
				continue
			}
			emit()
			pending.from, pending.to, pending.addrs = from, to, rs
		}
		emit()
		byProto[proto] = nil // let the GC have it before the next protocol
	}
	slices.SortFunc(out, func(a, b Box) int {
		return cmp.Or(a.Addr.From.Compare(b.Addr.From), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Ports[0], b.Ports[0]))
	})
	return out
}

// unionRanges merges overlapping and adjacent ranges; the result is sorted.
func unionRanges(rs []AddrRange) []AddrRange {
	slices.SortFunc(rs, func(a, b AddrRange) int { return a.From.Compare(b.From) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		next := last.To.Next()
		if r.From.Compare(last.To) <= 0 || (next.IsValid() && r.From == next) {
			if r.To.Compare(last.To) > 0 {
				last.To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// rangeText prints a range as nft lists it: a single address, a prefix when the range is one, else a-b.
func (r AddrRange) text() string {
	if r.From == r.To {
		return r.From.String()
	}
	for bits := 0; bits <= r.From.BitLen(); bits++ {
		p := netip.PrefixFrom(r.From, bits)
		if p.Masked().Addr() == r.From && prefixRange(p).To == r.To {
			return p.String()
		}
	}
	return r.From.String() + "-" + r.To.String()
}
