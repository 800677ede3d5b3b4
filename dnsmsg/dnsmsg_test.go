package dnsmsg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// The codec is checked against miekg/dns (the library it replaces in the binary;
// a test dependency only): what miekg packs, Parse reads the same, and what this
// package builds, miekg reads as meant.

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return r
}

// sample messages of the kinds the forwarder and the resolver see.
func samples(t testing.TB) map[string]*dns.Msg {
	t.Helper()
	out := map[string]*dns.Msg{}
	q := new(dns.Msg)
	q.SetQuestion("sbc.Example.NET.", dns.TypeA)
	out["query"] = q

	qe := new(dns.Msg)
	qe.SetQuestion("phone.wild.example.", dns.TypeAAAA)
	qe.CheckingDisabled = true
	qe.SetEdns0(1232, true)
	out["query with EDNS0 DO"] = qe

	a := new(dns.Msg)
	a.SetReply(q)
	a.RecursionAvailable = true
	a.Answer = []dns.RR{
		rr(t, "sbc.Example.NET. 300 IN CNAME edge.cdn.example."),
		rr(t, "edge.cdn.example. 60 IN CNAME node7.cdn.example."),
		rr(t, "node7.cdn.example. 120 IN A 203.0.113.7"),
		rr(t, "node7.cdn.example. 121 IN A 203.0.113.8"),
	}
	a.Ns = []dns.RR{rr(t, "cdn.example. 3600 IN NS ns1.cdn.example.")}
	a.Extra = []dns.RR{rr(t, "ns1.cdn.example. 3600 IN AAAA 2001:db8::53")}
	out["answer with CNAME chain"] = a

	six := new(dns.Msg)
	six.SetReply(qe)
	six.Answer = []dns.RR{rr(t, "phone.wild.example. 30 IN AAAA 2001:db8:cafe::70"), rr(t, "phone.wild.example. 30 IN AAAA ::ffff:192.0.2.1")}
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(4096)
	opt.SetDo()
	opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	six.Extra = []dns.RR{opt}
	out["answer AAAA with OPT option"] = six

	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	nx.Ns = []dns.RR{rr(t, "example.net. 900 IN SOA ns.example.net. hostmaster.example.net. 1 7200 900 1209600 86400")}
	out["NXDOMAIN with SOA"] = nx

	odd := new(dns.Msg)
	odd.SetQuestion(`a\.b\032c\\d.Example.`, dns.TypeTXT)
	odd.Response = true
	odd.Answer = []dns.RR{rr(t, `a\.b\032c\\d.Example. 5 IN TXT "hello" "world"`), rr(t, `a\.b\032c\\d.Example. 5 IN MX 10 mail\255.example.`)}
	out["escaped names, TXT and MX"] = odd

	root := new(dns.Msg)
	root.SetQuestion(".", dns.TypeNS)
	out["root"] = root
	return out
}

func pack(t testing.TB, m *dns.Msg, compress bool) []byte {
	t.Helper()
	m.Compress = compress
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compare checks that mine decodes what miekg decoded from the same bytes.
func compare(t testing.TB, b []byte, mine *Msg, theirs *dns.Msg) {
	t.Helper()
	if mine.ID != theirs.Id || mine.Response() != theirs.Response || mine.Opcode() != theirs.Opcode ||
		mine.Truncated() != theirs.Truncated || mine.RecursionDesired() != theirs.RecursionDesired ||
		mine.CheckingDisabled() != theirs.CheckingDisabled || mine.Rcode() != theirs.Rcode&0xf || mine.FullRcode() != theirs.Rcode {
		t.Errorf("header %+v, miekg %+v", mine.Header, theirs.MsgHdr)
	}
	if len(mine.Question) != len(theirs.Question) {
		t.Fatalf("%d questions, miekg %d", len(mine.Question), len(theirs.Question))
	}
	for i, q := range mine.Question {
		w := theirs.Question[i]
		if q.Name != w.Name || q.Type != w.Qtype || q.Class != w.Qclass {
			t.Errorf("question %+v, miekg %+v", q, w)
		}
	}
	for s, sec := range [][2]any{{mine.Answer, theirs.Answer}, {mine.Authority, theirs.Ns}, {mine.Additional, theirs.Extra}} {
		rrs, want := sec[0].([]RR), sec[1].([]dns.RR)
		if len(rrs) != len(want) {
			t.Fatalf("section %d: %d records, miekg %d", s, len(rrs), len(want))
		}
		for i, r := range rrs {
			h := want[i].Header()
			if r.Name != h.Name || r.Type != h.Rrtype || r.Class != h.Class || r.TTL != h.Ttl || len(r.Data) != int(h.Rdlength) {
				t.Errorf("section %d record %d: %s %d %d %d (%d bytes), miekg %s", s, i, r.Name, r.Type, r.Class, r.TTL, len(r.Data), want[i])
			}
			if binary.BigEndian.Uint32(b[r.TTLOff:]) != r.TTL {
				t.Errorf("section %d record %d: TTL offset %d does not hold the TTL", s, i, r.TTLOff)
			}
			addr, ok := r.Addr()
			if h.Rdlength == 0 { // no data: miekg's record is empty too
				if ok {
					t.Errorf("an address %v from a record without data", addr)
				}
				continue
			}
			switch x := want[i].(type) {
			case *dns.A:
				if w, _ := netip.AddrFromSlice(x.A.To4()); !ok || addr != w {
					t.Errorf("A %v, miekg %v", addr, x.A)
				}
			case *dns.AAAA:
				if w, _ := netip.AddrFromSlice(x.AAAA.To16()); !ok || addr != w {
					t.Errorf("AAAA %v, miekg %v", addr, x.AAAA)
				}
			case *dns.CNAME:
				if r.Target != x.Target {
					t.Errorf("CNAME target %q, miekg %q", r.Target, x.Target)
				}
			case *dns.OPT:
				if r.UDPSize() != x.UDPSize() || r.DO() != x.Do() {
					t.Errorf("OPT size %d DO %v, miekg %d %v", r.UDPSize(), r.DO(), x.UDPSize(), x.Do())
				}
			default:
				if ok {
					t.Errorf("an address from a %T", x)
				}
			}
		}
	}
	if (mine.OPT() == nil) != (theirs.IsEdns0() == nil) {
		t.Errorf("OPT %v, miekg %v", mine.OPT(), theirs.IsEdns0())
	}
}

func TestParseAgainstMiekg(t *testing.T) {
	for name, m := range samples(t) {
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/compress=%v", name, compress), func(t *testing.T) {
				b := pack(t, m, compress)
				mine, err := Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				if mine.End != len(b) {
					t.Errorf("End %d, message %d bytes", mine.End, len(b))
				}
				theirs := new(dns.Msg)
				if err := theirs.Unpack(b); err != nil {
					t.Fatal(err)
				}
				compare(t, b, mine, theirs)
				// Trailing bytes are not part of the message.
				if m2, err := Parse(append(b, 0, 0, 0)); err != nil || m2.End != len(b) {
					t.Errorf("with trailing bytes: End %v, err %v", m2, err)
				}
			})
		}
	}
}

// The TTL offsets are where miekg finds the TTLs: changing the bytes there
// changes exactly those records' TTLs.
func TestTTLOffsetsAgainstMiekg(t *testing.T) {
	for name, m := range samples(t) {
		b := pack(t, m, true)
		offs, minTTL, err := TTLOffsets(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		theirs := new(dns.Msg)
		theirs.Unpack(b)
		var want []dns.RR
		wantMin := uint32(1<<31 - 1)
		for _, r := range append(append(append([]dns.RR{}, theirs.Answer...), theirs.Ns...), theirs.Extra...) {
			if r.Header().Rrtype != dns.TypeOPT {
				want = append(want, r)
				wantMin = min(wantMin, r.Header().Ttl)
			}
		}
		if len(offs) != len(want) || minTTL != wantMin {
			t.Fatalf("%s: %d offsets, min %d; miekg %d records, min %d", name, len(offs), minTTL, len(want), wantMin)
		}
		c := bytes.Clone(b)
		for i, off := range offs {
			binary.BigEndian.PutUint32(c[off:], 1000+uint32(i))
		}
		changed := new(dns.Msg)
		if err := changed.Unpack(c); err != nil {
			t.Fatal(err)
		}
		i := 0
		for _, r := range append(append(append([]dns.RR{}, changed.Answer...), changed.Ns...), changed.Extra...) {
			if r.Header().Rrtype == dns.TypeOPT {
				if r.Header().Ttl != theirs.IsEdns0().Hdr.Ttl {
					t.Errorf("%s: OPT's flags changed", name)
				}
				continue
			}
			if r.Header().Ttl != 1000+uint32(i) {
				t.Errorf("%s: record %d TTL %d, want %d", name, i, r.Header().Ttl, 1000+i)
			}
			i++
		}
		if _, _, err := TTLOffsets(append(b, 0)); err == nil {
			t.Errorf("%s: trailing byte accepted", name)
		}
	}
}

func TestNamesAgainstMiekg(t *testing.T) {
	for _, name := range []string{".", "example.com.", "Example.COM", `a\.b.example.`, `sp\032ace.x.`, `\255\000.x.`, `q\"uo\(te\).x.`,
		"a12345678901234567890123456789012345678901234567890123456789012.x.", "xn--bcher-kva.example."} {
		mine, err := AppendName(nil, name)
		if err != nil {
			t.Errorf("AppendName(%q): %v", name, err)
			continue
		}
		theirs := make([]byte, 300)
		n, err := dns.PackDomainName(dns.Fqdn(name), theirs, 0, nil, false)
		if err != nil {
			t.Fatalf("miekg: %q: %v", name, err)
		}
		if !bytes.Equal(mine, theirs[:n]) {
			t.Errorf("AppendName(%q) = %q, miekg %q", name, mine, theirs[:n])
		}
		got, off, err := ReadName(mine, 0)
		want, woff, werr := dns.UnpackDomainName(mine, 0)
		if err != nil || werr != nil || got != want || off != woff {
			t.Errorf("ReadName(%q) = %q %d %v, miekg %q %d %v", mine, got, off, err, want, woff, werr)
		}
	}
	for _, bad := range []string{"a..b.", "..", `x\`, "a1234567890123456789012345678901234567890123456789012345678901234.x.", `\256.x.`} {
		if b, err := AppendName(nil, bad); err == nil {
			t.Errorf("AppendName(%q) = %q, want an error", bad, b)
		}
	}
	long := ""
	for len(long) < 260 {
		long += "abcdefghi."
	}
	if _, err := AppendName(nil, long); err == nil {
		t.Error("a name longer than 255 octets was packed")
	}
}

func TestEqualNames(t *testing.T) {
	a := pack(t, samples(t)["answer with CNAME chain"], true)
	m, _ := Parse(a)
	plain, _ := AppendName(nil, "SBC.example.net.")
	other, _ := AppendName(nil, "sbc.example.ne.")
	longer, _ := AppendName(nil, "x.sbc.example.net.")
	if !EqualNames(a, m.Question[0].NameOff, plain, 0) || !EqualNames(plain, 0, a, m.Question[0].NameOff) {
		t.Error("the same name in other case and compression is not equal")
	}
	if !EqualNames(a, m.Answer[0].DataOff, a, m.Answer[1].NameOff) { // edge.cdn.example: CNAME target and next owner
		t.Error("a compressed CNAME target and the owner it names are not equal")
	}
	for _, o := range [][]byte{other, longer, {0xc0, 0x00}} {
		if EqualNames(a, m.Question[0].NameOff, o, 0) {
			t.Errorf("%q equal to the question", o)
		}
	}
}

// What this package builds, miekg reads as meant; the short answers are byte for
// byte what miekg built before.
func TestBuildAgainstMiekg(t *testing.T) {
	q, err := NewQuery(0x1234, "sbc.example.net", TypeAAAA, true)
	if err != nil {
		t.Fatal(err)
	}
	theirs := new(dns.Msg)
	if err := theirs.Unpack(q); err != nil {
		t.Fatal(err)
	}
	if theirs.Id != 0x1234 || !theirs.RecursionDesired || theirs.Response || len(theirs.Question) != 1 ||
		theirs.Question[0] != (dns.Question{Name: "sbc.example.net.", Qtype: dns.TypeAAAA, Qclass: dns.ClassINET}) || len(theirs.Extra) != 0 {
		t.Errorf("query reads as %v", theirs)
	}

	for name, req := range samples(t) {
		if req.Response {
			continue
		}
		b := pack(t, req, false)
		m, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, rc := range []int{RcodeRefused, RcodeServerFailure, RcodeNameError, RcodeFormatError} {
			got, err := Reply(m, rc)
			if err != nil {
				t.Fatal(err)
			}
			want := pack(t, new(dns.Msg).SetRcode(req, rc), false)
			if !bytes.Equal(got, want) {
				t.Errorf("%s: Reply rcode %d\n got %x\nwant %x", name, rc, got, want)
			}
		}
		// The server's rejection: header flags kept, QR set, AA and Z cleared.
		for _, rc := range []int{RcodeFormatError, RcodeNotImplemented} {
			r := new(dns.Msg)
			r.MsgHdr = req.MsgHdr
			r.Authoritative, r.Zero, r.AuthenticatedData, r.Opcode = true, true, true, dns.OpcodeStatus
			hb := pack(t, r, false)
			h, _ := ParseHeader(hb)
			got := Reject(h, nil, rc)
			r.SetRcodeFormatError(r)
			r.Zero = false
			if rc == RcodeNotImplemented {
				r.Opcode, r.Rcode = dns.OpcodeStatus, dns.RcodeNotImplemented
			}
			r.Question = nil
			want := pack(t, r, false)
			if !bytes.Equal(got, want) {
				t.Errorf("%s: Reject rcode %d\n got %x\nwant %x", name, rc, got, want)
			}
		}
	}
}

func TestTruncateAgainstMiekg(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("many.example.", dns.TypeA)
	for _, withOPT := range []bool{false, true} {
		m := new(dns.Msg)
		m.SetReply(q)
		for i := range 60 {
			m.Answer = append(m.Answer, rr(t, fmt.Sprintf("many.example. 60 IN A 198.51.100.%d", i)))
		}
		m.Ns = []dns.RR{rr(t, "example. 60 IN NS ns.example.")}
		if withOPT {
			m.SetEdns0(1232, false)
		}
		full := pack(t, m, true)
		for _, size := range []int{100, 512, 700, 1232, len(full), 4096} {
			got, err := Truncate(full, size)
			if err != nil {
				t.Fatal(err)
			}
			if size >= len(full) {
				if !bytes.Equal(got, full) {
					t.Errorf("size %d: a message that fits was changed", size)
				}
				continue
			}
			if len(got) > max(size, MinMsgSize) {
				t.Errorf("size %d: %d bytes", size, len(got))
			}
			theirs := new(dns.Msg)
			if err := theirs.Unpack(got); err != nil {
				t.Fatalf("size %d: miekg cannot read it: %v", size, err)
			}
			ref := m.Copy()
			ref.Truncate(size)
			if !theirs.Truncated || len(theirs.Answer) != len(ref.Answer) || len(theirs.Ns) != len(ref.Ns) || (theirs.IsEdns0() != nil) != withOPT {
				t.Errorf("size %d: TC %v, %d answers %d NS OPT %v; miekg's Truncate: %d answers %d NS", size, theirs.Truncated,
					len(theirs.Answer), len(theirs.Ns), theirs.IsEdns0() != nil, len(ref.Answer), len(ref.Ns))
			}
			mine, err := Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, got, mine, theirs)
		}
	}
}

// Malformed input is an error, never a panic, never a wrong answer.
func TestMalformed(t *testing.T) {
	hdr := func(qd, an uint16) []byte {
		return Header{ID: 1, Flags: FlagQR, QDCount: qd, ANCount: an}.append(nil)
	}
	cases := map[string][]byte{
		"short header":          {0, 1, 2},
		"pointer to itself":     append(hdr(1, 0), 0xc0, 12, 0, 1, 0, 1),
		"pointer loop of two":   append(hdr(1, 0), 1, 'a', 0xc0, 16, 0xc0, 12, 0, 1, 0, 1),
		"pointer past the end":  append(hdr(1, 0), 0xc0, 200, 0, 1, 0, 1),
		"pointer cut short":     append(hdr(1, 0), 0xc0),
		"label past the end":    append(hdr(1, 0), 10, 'a', 'b'),
		"reserved label type":   append(hdr(1, 0), 0x40, 'a', 0, 0, 1, 0, 1),
		"reserved label type 2": append(hdr(1, 0), 0x80, 0, 1, 0, 1),
		"question cut short":    append(hdr(1, 0), 1, 'a', 0, 0, 1),
		"missing question":      append(hdr(2, 0), 1, 'a', 0, 0, 1, 0, 1),
		"missing record":        append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1),
		"record header short":   append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0),
		"rdata past the end":    append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2),
		"A of 5 bytes":          append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 5, 1, 2, 3, 4, 5),
		"AAAA of 4 bytes":       append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4),
		"CNAME longer than its data": append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2,
			1, 'b', 0),
		"CNAME shorter than its data": append(hdr(1, 1), 1, 'a', 0, 0, 1, 0, 1, 0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 3,
			0, 0, 0),
		"OPT option past its record": append(hdr(0, 1), 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 8, 1),
	}
	long := hdr(1, 0)
	for range 26 {
		long = append(long, 9, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i')
	}
	cases["name longer than 255"] = append(long, 0, 0, 1, 0, 1)
	// 127 pointers in a chain, each to the next: not a loop, but more than a name can need.
	chain := hdr(1, 0)
	for i := range 128 {
		chain = append(chain, 0xc0|byte((12+2*(i+1))>>8), byte(12+2*(i+1)))
	}
	cases["pointer chain of 128"] = append(chain, 0, 0, 1, 0, 1)
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if err := Check(b); err == nil {
				t.Error("Check accepted it")
			}
			if m, err := Parse(b); err == nil {
				t.Errorf("Parse = %+v, want an error", m)
			} else if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
			if _, _, err := TTLOffsets(b); err == nil && name != "A of 5 bytes" && name != "AAAA of 4 bytes" &&
				name != "OPT option past its record" && name != "CNAME longer than its data" && name != "CNAME shorter than its data" {
				t.Error("TTLOffsets accepted it")
			}
			Truncate(append(b, make([]byte, 600)...), 512) // must not panic
			for off := range b {
				ReadName(b, off)
				EqualNames(b, off, b, 12)
			}
		})
	}
	// Every prefix of a real message is an error too (but the bare header, which
	// parses with empty sections, as miekg/dns reads it).
	b := pack(t, samples(t)["answer with CNAME chain"], true)
	for n := range len(b) {
		m, err := Parse(b[:n])
		if n == HeaderLen {
			if err != nil || len(m.Question)+len(m.Answer) != 0 {
				t.Errorf("bare header: %v %v", m, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("a prefix of %d of %d bytes parsed", n, len(b))
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, m := range samples(f) {
		f.Add(pack(f, m, true))
		f.Add(pack(f, m, false))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mine, err := Parse(b)
		if cerr := Check(b); (cerr == nil) != (err == nil) {
			t.Fatalf("Check %v, Parse %v", cerr, err)
		}
		theirs := new(dns.Msg)
		terr := theirs.Unpack(b)
		if err == nil {
			if mine.End > len(b) {
				t.Fatalf("End %d past %d bytes", mine.End, len(b))
			}
			if terr == nil {
				compare(t, b, mine, theirs)
			} else if !outsideCodec(mine) {
				t.Fatalf("parsed what miekg refuses (%v): %+v", terr, mine)
			}
		}
		if offs, _, err := TTLOffsets(b); err == nil {
			for _, o := range offs {
				if o+4 > len(b) {
					t.Fatalf("TTL offset %d past %d bytes", o, len(b))
				}
			}
		}
		for _, size := range []int{0, 512, 700} {
			out, err := Truncate(b, size)
			if err == nil && len(b) > max(size, MinMsgSize) {
				if _, perr := Parse(out); perr != nil && mine != nil {
					t.Fatalf("Truncate(%d) of a parsed message does not parse: %v", size, perr)
				}
			}
		}
		for off := range min(len(b), 64) {
			name, next, err := ReadName(b, off)
			want, wnext, werr := dns.UnpackDomainName(b, off)
			if (err == nil) != (werr == nil) || err == nil && (name != want || next != wnext) {
				t.Fatalf("ReadName(%d) = %q %d %v, miekg %q %d %v", off, name, next, err, want, wnext, werr)
			}
			if err == nil {
				packed, perr := AppendName(nil, name)
				if perr != nil || !EqualNames(packed, 0, b, off) {
					t.Fatalf("AppendName(%q) = %q %v: not the name read", name, packed, perr)
				}
			}
		}
	})
}

// outsideCodec: the message has records whose data this codec does not check
// (miekg checks every type's data: an MX of one byte, an EDNS0 option of a known
// code with a bad length).
func outsideCodec(m *Msg) bool {
	for _, sec := range [][]RR{m.Answer, m.Authority, m.Additional} {
		for _, r := range sec {
			switch r.Type {
			case TypeA, TypeAAAA, TypeCNAME:
			case TypeOPT:
				if len(r.Data) > 0 {
					return true
				}
			default:
				if len(r.Data) > 0 {
					return true
				}
			}
		}
	}
	return false
}
