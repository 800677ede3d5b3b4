package firewall

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/voipgw/voipgw/catalog"
)

func boxText(b Box) string {
	return fmt.Sprintf("%s %s %d-%d", b.Addr.text(), b.Proto, b.Ports[0], b.Ports[1])
}

func inRange(r AddrRange, a netip.Addr) bool {
	return r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

func rangesIntersect(a, b AddrRange) bool {
	return a.From.Compare(b.To) <= 0 && b.From.Compare(a.To) <= 0
}

func boxesOverlap(a, b Box) bool {
	return a.Proto == b.Proto && rangesIntersect(a.Addr, b.Addr) &&
		a.Ports[0] <= b.Ports[1] && b.Ports[0] <= a.Ports[1]
}

type point struct {
	addr  netip.Addr
	proto catalog.Proto
	port  uint16
}

func inputCovers(allows []Allow, p point) bool {
	for _, a := range allows {
		if a.Port.Proto == p.proto && a.Port.First <= p.port && p.port <= a.Port.Last && a.Prefix.Contains(p.addr) {
			return true
		}
	}
	return false
}

func outputCovers(boxes []Box, p point) bool {
	for _, b := range boxes {
		if b.Proto == p.proto && b.Ports[0] <= p.port && p.port <= b.Ports[1] && inRange(b.Addr, p.addr) {
			return true
		}
	}
	return false
}

// randomAllows draws entries from a few small, overlapping address ranges (and now
// and then the whole address space) with small, overlapping port ranges, so that
// the sweep meets every kind of overlap and adjacency.
func randomAllows(r *rand.Rand, v6 bool, n int) []Allow {
	bases4 := []string{"10.0.0.0", "10.0.3.0", "192.0.2.0", "255.255.255.0"}
	bases6 := []string{"2001:db8::", "2001:db8::300", "fd00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00"}
	bases := bases4
	if v6 {
		bases = bases6
	}
	var out []Allow
	for range n {
		base := netip.MustParseAddr(bases[r.IntN(len(bases))])
		b := base.AsSlice()
		off := r.IntN(1024)
		b[len(b)-2] += byte(off >> 8)
		b[len(b)-1] += byte(off)
		addr, _ := netip.AddrFromSlice(b)
		bits := addr.BitLen() - r.IntN(11) // /22../32 or /118../128
		if r.IntN(20) == 0 {
			bits = 0
		}
		p := netip.PrefixFrom(addr, bits).Masked()

		proto := catalog.UDP
		if r.IntN(2) == 0 {
			proto = catalog.TCP
		}
		var first, last uint16
		switch r.IntN(10) {
		case 0:
			first, last = 1, 65535
		case 1:
			first = 65535 - uint16(r.IntN(3))
			last = 65535
		case 2:
			first = 1 + uint16(r.IntN(3))
			last = first + uint16(r.IntN(3))
		default:
			first = 5060 + uint16(r.IntN(20))
			last = first + uint16(r.IntN(8))
			if r.IntN(3) == 0 {
				last = first
			}
		}
		out = append(out, Allow{Prefix: p, Port: catalog.PortRange{Proto: proto, First: first, Last: last}})
	}
	return out
}

// corners are the points at and just outside every corner of a box.
func corners(r AddrRange, proto catalog.Proto, first, last uint16) []point {
	var addrs []netip.Addr
	for _, a := range []netip.Addr{r.From, r.To, r.From.Prev(), r.To.Next()} {
		if a.IsValid() {
			addrs = append(addrs, a)
		}
	}
	ports := []uint16{first, last}
	if first > 0 {
		ports = append(ports, first-1)
	}
	if last < 65535 {
		ports = append(ports, last+1)
	}
	var out []point
	for _, a := range addrs {
		for _, pr := range []catalog.Proto{proto, catalog.UDP + catalog.TCP - proto} {
			for _, port := range ports {
				out = append(out, point{a, pr, port})
			}
		}
	}
	return out
}

func checkNormalized(t *testing.T, allows []Allow, boxes []Box, r *rand.Rand, samples int) {
	t.Helper()
	for i, b := range boxes {
		if b.Addr.From.Compare(b.Addr.To) > 0 || b.Ports[0] > b.Ports[1] || b.Ports[0] == 0 {
			t.Fatalf("malformed box %s", boxText(b))
		}
		if b.Addr.From.Is4() != b.Addr.To.Is4() {
			t.Fatalf("box %s mixes families", boxText(b))
		}
		if i > 0 && !(boxes[i-1].Addr.From.Compare(b.Addr.From) < 0 ||
			boxes[i-1].Addr.From == b.Addr.From && (boxes[i-1].Proto < b.Proto || boxes[i-1].Proto == b.Proto && boxes[i-1].Ports[0] < b.Ports[0])) {
			t.Errorf("boxes not sorted: %s before %s", boxText(boxes[i-1]), boxText(b))
		}
		for _, c := range boxes[:i] {
			if boxesOverlap(b, c) {
				t.Fatalf("boxes overlap: %s and %s", boxText(c), boxText(b))
			}
		}
	}
	var pts []point
	for _, a := range allows {
		pts = append(pts, corners(prefixRange(a.Prefix), a.Port.Proto, a.Port.First, a.Port.Last)...)
	}
	for _, b := range boxes {
		pts = append(pts, corners(b.Addr, b.Proto, b.Ports[0], b.Ports[1])...)
	}
	for range samples {
		// A sample near some entry: inside or around its prefix and port range.
		a := allows[r.IntN(len(allows))]
		b := a.Prefix.Addr().AsSlice()
		off := r.IntN(2048) - 512
		b[len(b)-1] += byte(off)
		b[len(b)-2] += byte(off >> 8)
		addr, _ := netip.AddrFromSlice(b)
		proto := catalog.UDP
		if r.IntN(2) == 0 {
			proto = catalog.TCP
		}
		port := uint16(max(1, int(a.Port.First)+r.IntN(40)-20))
		pts = append(pts, point{addr, proto, port})
	}
	for _, p := range pts {
		if in, out := inputCovers(allows, p), outputCovers(boxes, p); in != out {
			t.Fatalf("%s %s/%d: covered by input %v, by output %v\ninput %v\noutput %v", p.addr, p.proto, p.port, in, out, allows, boxTexts(boxes))
		}
	}
}

func boxTexts(bs []Box) []string {
	var out []string
	for _, b := range bs {
		out = append(out, boxText(b))
	}
	return out
}

func TestNormalizeProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 5060))
	for round := range 400 {
		v6 := round%2 == 1
		allows := randomAllows(r, v6, 1+r.IntN(25))
		in := slices.Clone(allows)
		boxes := normalize(allows)
		if !slices.Equal(in, allows) {
			t.Fatalf("normalize modified its input")
		}
		checkNormalized(t, allows, boxes, r, 300)
		if t.Failed() {
			return
		}
		// Idempotent: normalizing the boxes (where they are prefixes) changes nothing,
		// and the result does not depend on the input order.
		shuffled := slices.Clone(allows)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := normalize(shuffled); !slices.Equal(got, boxes) {
			t.Fatalf("order-dependent result:\n%v\n%v", boxTexts(boxes), boxTexts(got))
		}
		dup := append(slices.Clone(allows), allows...)
		if got := normalize(dup); !slices.Equal(got, boxes) {
			t.Fatalf("duplicated input changes the result:\n%v\n%v", boxTexts(boxes), boxTexts(got))
		}
	}
}

func TestNormalizeCases(t *testing.T) {
	cat := func(ls ...[]Allow) []Allow {
		var out []Allow
		for _, l := range ls {
			out = append(out, l...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		allow []Allow
		want  []string
	}{
		{"empty", nil, nil},
		{"one host, one port", allowsFor("192.0.2.1/32", "udp/5060"), []string{"192.0.2.1 udp 5060-5060"}},
		{"any subsumes a host",
			cat(allowsFor("192.0.2.1/32", "udp/53"), allowsFor("0.0.0.0/0", "udp/53")),
			[]string{"0.0.0.0/0 udp 53-53"}},
		{"any subsumes a host, other port kept",
			cat(allowsFor("0.0.0.0/0", "udp/53"), allowsFor("192.0.2.1/32", "udp/53", "udp/5060")),
			[]string{"0.0.0.0/0 udp 53-53", "192.0.2.1 udp 5060-5060"}},
		{"adjacent port ranges merge", allowsFor("192.0.2.1/32", "udp/10-20", "udp/21-30"), []string{"192.0.2.1 udp 10-30"}},
		{"overlapping port ranges merge", allowsFor("192.0.2.1/32", "udp/10-20", "udp/15-30", "udp/12"), []string{"192.0.2.1 udp 10-30"}},
		{"gap between port ranges stays", allowsFor("192.0.2.1/32", "udp/10-20", "udp/22-30"), []string{"192.0.2.1 udp 10-20", "192.0.2.1 udp 22-30"}},
		{"two hosts, same ports, merge to a range",
			cat(allowsFor("192.0.2.1/32", "tcp/443"), allowsFor("192.0.2.2/32", "tcp/443")),
			[]string{"192.0.2.1-192.0.2.2 tcp 443-443"}},
		{"two hosts, same ports, merge to a prefix",
			cat(allowsFor("192.0.2.2/32", "tcp/443", "udp/5060"), allowsFor("192.0.2.3/32", "tcp/443", "udp/5060")),
			[]string{"192.0.2.2/31 tcp 443-443", "192.0.2.2/31 udp 5060-5060"}},
		{"distant hosts stay apart",
			cat(allowsFor("192.0.2.1/32", "tcp/443"), allowsFor("192.0.2.3/32", "tcp/443")),
			[]string{"192.0.2.1 tcp 443-443", "192.0.2.3 tcp 443-443"}},
		{"protocols stay apart", allowsFor("192.0.2.1/32", "udp-tcp/5060"), []string{"192.0.2.1 tcp 5060-5060", "192.0.2.1 udp 5060-5060"}},
		{"host inside subnet, overlapping ports",
			cat(allowsFor("198.51.100.0/24", "udp/10-20"), allowsFor("198.51.100.7/32", "udp/15-25")),
			[]string{"198.51.100.0/24 udp 10-20", "198.51.100.7 udp 21-25"}},
		{"whole port range and the last port",
			cat(allowsFor("192.0.2.1/32", "udp/1-65535"), allowsFor("192.0.2.1/32", "udp/65535"), allowsFor("192.0.2.2/32", "udp/65535")),
			[]string{"192.0.2.1 udp 1-65534", "192.0.2.1-192.0.2.2 udp 65535-65535"}},
		{"top of the address space",
			cat(allowsFor("255.255.255.255/32", "udp/1"), allowsFor("255.255.255.254/32", "udp/1")),
			[]string{"255.255.255.254/31 udp 1-1"}},
		{"IPv6 any subsumes",
			cat(allowsFor("2001:db8::1/128", "udp/53"), allowsFor("::/0", "udp/53")),
			[]string{"::/0 udp 53-53"}},
		{"IPv6 subnet and host",
			cat(allowsFor("2001:db8::/32", "udp/5060"), allowsFor("2001:db8::1/128", "udp/5060-5061")),
			[]string{"2001:db8::/32 udp 5060-5060", "2001:db8::1 udp 5061-5061"}},
		{"IPv6 adjacent hosts",
			cat(allowsFor("2001:db8::a/128", "tcp/5061"), allowsFor("2001:db8::b/128", "tcp/5061")),
			[]string{"2001:db8::a/127 tcp 5061-5061"}},
		{"IPv6 adjacent subnets", cat(allowsFor("2001:db8::/33", "tcp/443"), allowsFor("2001:db8:8000::/33", "tcp/443")),
			[]string{"2001:db8::/32 tcp 443-443"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := boxTexts(normalize(tc.allow))
			if !slices.Equal(got, tc.want) {
				t.Errorf("normalize:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestAddrRangeText(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"192.0.2.1", "192.0.2.1", "192.0.2.1"},
		{"192.0.2.0", "192.0.2.255", "192.0.2.0/24"},
		{"192.0.2.1", "192.0.2.2", "192.0.2.1-192.0.2.2"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"2001:db8::", "2001:db8::1", "2001:db8::/127"},
	} {
		r := AddrRange{From: netip.MustParseAddr(tc.from), To: netip.MustParseAddr(tc.to)}
		if got := r.text(); got != tc.want {
			t.Errorf("%s-%s: %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}
