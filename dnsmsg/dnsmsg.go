// Package dnsmsg is voipgw's own DNS message codec (RFC 1035, RFC 6891's OPT): just
// what the forwarder (dnsfwd) and the resolver need. It parses headers, questions,
// names with compression, A/AAAA/CNAME records with their TTLs and where those TTLs
// are in the message, and builds queries and the forwarder's short answers.
//
// It replaces github.com/miekg/dns in the voipgw binary: that library is a good
// codec, but it links crypto/tls (for its DNS-over-TLS client, which voipgw never
// uses) and with it about 1.5 MB of crypto code, a quarter of the binary size goal
// for a router (BENCHMARKS.md §4). miekg/dns stays a test dependency: the tests
// check this codec against it both ways.
//
// Names are given in presentation format as miekg/dns gives them: fully qualified
// ("example.com."), the root as ".", and label bytes escaped as in RFC 1035 §5.1
// ("\." for a dot inside a label, "\DDD" for bytes outside printable ASCII), so a
// label can never pose as two labels in a name compared with the allowlist.
//
// Nothing here panics on input: every read is bounded, compression pointers are
// followed at most maxPointers times, and names longer than 255 octets are refused.
package dnsmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Record types and classes voipgw deals with.
const (
	TypeA     uint16 = 1
	TypeNS    uint16 = 2
	TypeCNAME uint16 = 5
	TypeSOA   uint16 = 6
	TypePTR   uint16 = 12
	TypeMX    uint16 = 15
	TypeTXT   uint16 = 16
	TypeAAAA  uint16 = 28
	TypeOPT   uint16 = 41

	ClassINET uint16 = 1
)

// Response codes (RFC 1035 §4.1.1, RFC 2136).
const (
	RcodeSuccess        = 0
	RcodeFormatError    = 1
	RcodeServerFailure  = 2
	RcodeNameError      = 3 // NXDOMAIN
	RcodeNotImplemented = 4
	RcodeRefused        = 5
)

// OpcodeQuery is the standard query.
const OpcodeQuery = 0

// Header flag bits (the second 16-bit word of the header).
const (
	FlagQR uint16 = 1 << 15 // response
	FlagAA uint16 = 1 << 10 // authoritative answer
	FlagTC uint16 = 1 << 9  // truncated
	FlagRD uint16 = 1 << 8  // recursion desired
	FlagRA uint16 = 1 << 7  // recursion available
	FlagZ  uint16 = 1 << 6  // reserved, zero
	FlagAD uint16 = 1 << 5  // authentic data
	FlagCD uint16 = 1 << 4  // checking disabled
)

// Sizes.
const (
	HeaderLen  = 12
	MinMsgSize = 512   // what a UDP client without EDNS takes
	MaxMsgSize = 65535 // what TCP can carry
	maxNameLen = 255   // wire octets, root label included (RFC 1035 §2.3.4)
	// maxPointers bounds the compression pointers followed in one name: a name has
	// at most 127 labels, so more pointers than that can only be a loop.
	maxPointers = 126
	doBit       = 1 << 15 // DNSSEC OK, in OPT's TTL field (RFC 3225)
)

// ErrFormat is wrapped by every error about a malformed message.
var ErrFormat = errors.New("dnsmsg: malformed message")

func errf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
}

// Header is the fixed 12-byte start of a message.
type Header struct {
	ID      uint16
	Flags   uint16
	QDCount uint16
	ANCount uint16
	NSCount uint16
	ARCount uint16
}

// ParseHeader reads the header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, errf("%d bytes, shorter than a header", len(b))
	}
	return Header{
		ID: binary.BigEndian.Uint16(b), Flags: binary.BigEndian.Uint16(b[2:]),
		QDCount: binary.BigEndian.Uint16(b[4:]), ANCount: binary.BigEndian.Uint16(b[6:]),
		NSCount: binary.BigEndian.Uint16(b[8:]), ARCount: binary.BigEndian.Uint16(b[10:]),
	}, nil
}

func (h Header) Response() bool         { return h.Flags&FlagQR != 0 }
func (h Header) Opcode() int            { return int(h.Flags>>11) & 0xf }
func (h Header) Truncated() bool        { return h.Flags&FlagTC != 0 }
func (h Header) RecursionDesired() bool { return h.Flags&FlagRD != 0 }
func (h Header) CheckingDisabled() bool { return h.Flags&FlagCD != 0 }

// Rcode is the header's 4-bit response code (OPT's extended bits are not added).
func (h Header) Rcode() int { return int(h.Flags & 0xf) }

func (h Header) append(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, h.ID)
	b = binary.BigEndian.AppendUint16(b, h.Flags)
	b = binary.BigEndian.AppendUint16(b, h.QDCount)
	b = binary.BigEndian.AppendUint16(b, h.ANCount)
	b = binary.BigEndian.AppendUint16(b, h.NSCount)
	return binary.BigEndian.AppendUint16(b, h.ARCount)
}

// Question is one entry of the question section.
type Question struct {
	Name    string // presentation format, fully qualified
	Type    uint16
	Class   uint16
	NameOff int // where the name starts in the message
}

// RR is one resource record. Data is the record's RDATA as it is in the message
// (names in it may be compressed: pointers are relative to the whole message).
type RR struct {
	Name    string
	NameOff int // where the owner name starts in the message
	Type    uint16
	Class   uint16
	TTL     uint32
	TTLOff  int    // offset of the TTL field in the message (the forwarder's cache counts it down there)
	Data    []byte // a slice of the message
	DataOff int
	Target  string // CNAME: the canonical name it points to
}

// Addr is the address of an A or AAAA record; false for other types and for a
// record without data.
func (r *RR) Addr() (netip.Addr, bool) {
	switch {
	case r.Type == TypeA && len(r.Data) == 4:
		return netip.AddrFrom4([4]byte(r.Data)), true
	case r.Type == TypeAAAA && len(r.Data) == 16:
		return netip.AddrFrom16([16]byte(r.Data)), true
	}
	return netip.Addr{}, false
}

// UDPSize is an OPT record's advertised UDP payload size (its class field).
func (r *RR) UDPSize() uint16 { return r.Class }

// DO is an OPT record's DNSSEC OK bit.
func (r *RR) DO() bool { return r.TTL&doBit != 0 }

// FullRcode is the response code with OPT's extended bits (RFC 6891 §6.1.3).
func (m *Msg) FullRcode() int {
	rc := m.Rcode()
	if opt := m.OPT(); opt != nil {
		rc |= int(opt.TTL>>24) << 4
	}
	return rc
}

// Msg is a parsed message.
type Msg struct {
	Header
	Question   []Question
	Answer     []RR
	Authority  []RR
	Additional []RR
	// End is where the message ends in the parsed bytes; anything after it (bytes
	// some senders pad with) is not part of it.
	End int
}

// OPT returns the message's OPT record (EDNS0), or nil. Like miekg/dns it takes
// the last one in the additional section.
func (m *Msg) OPT() *RR {
	for i := len(m.Additional) - 1; i >= 0; i-- {
		if m.Additional[i].Type == TypeOPT {
			return &m.Additional[i]
		}
	}
	return nil
}

// Parse parses a whole message. It is strict where a lenient parse could be
// fooled: every section must hold as many entries as the header counts, and A,
// AAAA, CNAME and OPT data must be well formed. A message of only a header (some
// servers answer REFUSED that way) parses with empty sections whatever its counts.
func Parse(b []byte) (*Msg, error) {
	m := new(Msg)
	if err := parse(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Check reports whether Parse would accept b, without decoding names or keeping
// records (no allocation): for messages passed on as they came.
func Check(b []byte) error { return parse(b, nil) }

// parse parses b into m, or only checks it if m is nil.
func parse(b []byte, m *Msg) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	if m != nil {
		*m = Msg{Header: h, End: HeaderLen}
	}
	if len(b) == HeaderLen {
		return nil
	}
	off := HeaderLen
	if m != nil && h.QDCount > 0 {
		m.Question = make([]Question, 0, min(int(h.QDCount), 4))
	}
	for i := 0; i < int(h.QDCount); i++ {
		q := Question{NameOff: off}
		if m != nil {
			q.Name, off, err = ReadName(b, off)
		} else {
			off, err = SkipName(b, off)
		}
		if err != nil {
			return fmt.Errorf("question %d: %w", i, err)
		}
		if off+4 > len(b) {
			return errf("question %d: ends after its name", i)
		}
		q.Type, q.Class = binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
		off += 4
		if m != nil {
			m.Question = append(m.Question, q)
		}
	}
	var secs [3]*[]RR
	if m != nil {
		secs = [3]*[]RR{&m.Answer, &m.Authority, &m.Additional}
	}
	for s, n := range [3]uint16{h.ANCount, h.NSCount, h.ARCount} {
		if n == 0 {
			continue
		}
		if m != nil {
			// Counts are the sender's word: allocate for what the bytes can hold at most.
			*secs[s] = make([]RR, 0, min(int(n), (len(b)-off)/11+1))
		}
		for i := 0; i < int(n); i++ {
			var rr RR
			if rr, off, err = parseRR(b, off, m != nil); err != nil {
				return fmt.Errorf("section %d record %d: %w", s+1, i, err)
			}
			if m != nil {
				*secs[s] = append(*secs[s], rr)
			}
		}
	}
	if m != nil {
		m.End = off
	}
	return nil
}

// parseRR parses the record at off; names says whether to decode its names.
func parseRR(b []byte, off int, names bool) (RR, int, error) {
	rr := RR{NameOff: off}
	var err error
	if names {
		rr.Name, off, err = ReadName(b, off)
	} else {
		off, err = SkipName(b, off)
	}
	if err != nil {
		return rr, 0, err
	}
	if off+10 > len(b) {
		return rr, 0, errf("record header cut short at %d", off)
	}
	rr.Type = binary.BigEndian.Uint16(b[off:])
	rr.Class = binary.BigEndian.Uint16(b[off+2:])
	rr.TTLOff = off + 4
	rr.TTL = binary.BigEndian.Uint32(b[off+4:])
	n := int(binary.BigEndian.Uint16(b[off+8:]))
	off += 10
	if off+n > len(b) {
		return rr, 0, errf("record data of %d bytes at %d runs past the message (%d)", n, off, len(b))
	}
	rr.DataOff, rr.Data = off, b[off:off+n:off+n]
	end := off + n
	if n == 0 {
		// No data (RFC 2136 uses it; miekg/dns accepts it for every type).
		return rr, end, nil
	}
	switch rr.Type {
	case TypeA:
		if n != 4 {
			return rr, 0, errf("A record with %d bytes of data", n)
		}
	case TypeAAAA:
		if n != 16 {
			return rr, 0, errf("AAAA record with %d bytes of data", n)
		}
	case TypeCNAME:
		// The name must fill the data exactly; it may point back into the message
		// but not past the record (as miekg/dns reads it).
		var next int
		if names {
			rr.Target, next, err = ReadName(b[:end], off)
		} else {
			next, err = SkipName(b[:end], off)
		}
		if err != nil {
			return rr, 0, fmt.Errorf("CNAME target: %w", err)
		}
		if next != end {
			return rr, 0, errf("CNAME data of %d bytes holds a name of %d", n, next-off)
		}
	case TypeOPT:
		// Options: code, length, value (RFC 6891 §6.1.2).
		for o := off; o < end; {
			if o+4 > end {
				return rr, 0, errf("OPT option header cut short")
			}
			o += 4 + int(binary.BigEndian.Uint16(b[o+2:]))
			if o > end {
				return rr, 0, errf("OPT option runs past its record")
			}
		}
	}
	return rr, end, nil
}

// labels iterates over the labels of a (possibly compressed) name.
type labels struct {
	b      []byte
	off    int
	next   int // offset after the name where it starts; -1 until known
	ptrs   int
	budget int
}

func newLabels(b []byte, off int) labels { return labels{b: b, off: off, next: -1, budget: maxNameLen} }

// label returns the next label, or nil at the end of the name.
func (it *labels) label() ([]byte, error) {
	b := it.b
	for {
		off := it.off
		if off < 0 || off >= len(b) {
			return nil, errf("name at %d runs past the message", off)
		}
		c := int(b[off])
		switch c & 0xc0 {
		case 0x00:
			if c == 0 {
				if it.next < 0 {
					it.next = off + 1
				}
				return nil, nil
			}
			if off+1+c > len(b) {
				return nil, errf("label at %d runs past the message", off)
			}
			// A label and its length byte; the root byte must fit too (≤ 255 in all).
			if it.budget -= c + 1; it.budget <= 0 {
				return nil, errf("name longer than %d octets", maxNameLen)
			}
			it.off = off + 1 + c
			return b[off+1 : off+1+c], nil
		case 0xc0:
			if off+1 >= len(b) {
				return nil, errf("compression pointer at %d cut short", off)
			}
			if it.ptrs++; it.ptrs > maxPointers {
				return nil, errf("too many compression pointers (a loop?)")
			}
			if it.next < 0 {
				it.next = off + 2
			}
			it.off = (c&0x3f)<<8 | int(b[off+1])
		default:
			return nil, errf("label type 0x%02x at %d", c&0xc0, off)
		}
	}
}

// SkipName returns the offset after the name at off, checking it as ReadName does.
func SkipName(b []byte, off int) (int, error) {
	it := newLabels(b, off)
	for {
		l, err := it.label()
		if err != nil {
			return 0, err
		}
		if l == nil {
			return it.next, nil
		}
	}
}

// ReadName reads the (possibly compressed) name at off in presentation format and
// returns it with the offset after it.
func ReadName(b []byte, off int) (string, int, error) {
	var buf [4 * maxNameLen]byte
	s := buf[:0]
	it := newLabels(b, off)
	for {
		l, err := it.label()
		if err != nil {
			return "", 0, err
		}
		if l == nil {
			break
		}
		for _, c := range l {
			switch {
			case c == '.' || c == ' ' || c == '\'' || c == '@' || c == ';' || c == '(' || c == ')' || c == '"' || c == '\\':
				s = append(s, '\\', c)
			case c < ' ' || c > '~':
				s = append(s, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
			default:
				s = append(s, c)
			}
		}
		s = append(s, '.')
	}
	if len(s) == 0 {
		return ".", it.next, nil
	}
	return string(s), it.next, nil
}

// EqualNames reports whether the names at aoff in a and boff in b are the same
// name, ignoring ASCII case (RFC 4343); false if either is malformed.
func EqualNames(a []byte, aoff int, b []byte, boff int) bool {
	x, y := newLabels(a, aoff), newLabels(b, boff)
	for {
		l, err := x.label()
		if err != nil {
			return false
		}
		m, err := y.label()
		if err != nil || len(l) != len(m) || (l == nil) != (m == nil) || !equalFold(l, m) {
			return false
		}
		if l == nil {
			return true
		}
	}
}

func equalFold(x, y []byte) bool {
	for k := range x {
		c, d := x[k], y[k]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// AppendName appends name (presentation format, with or without the final dot)
// to b uncompressed. Escapes "\X" and "\DDD" are understood.
func AppendName(b []byte, name string) ([]byte, error) {
	if name == "." || name == "" {
		return append(b, 0), nil
	}
	start := len(b)
	lenAt := len(b)
	b = append(b, 0)
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch c {
		case '.':
			if label == 0 {
				return b[:start], fmt.Errorf("dnsmsg: empty label in %q", name)
			}
			b[lenAt] = byte(label)
			lenAt, label = len(b), 0
			b = append(b, 0)
			continue
		case '\\':
			if i+1 >= len(name) {
				return b[:start], fmt.Errorf("dnsmsg: dangling escape in %q", name)
			}
			if i+3 < len(name) && isDigit(name[i+1]) && isDigit(name[i+2]) && isDigit(name[i+3]) {
				v := int(name[i+1]-'0')*100 + int(name[i+2]-'0')*10 + int(name[i+3]-'0')
				if v > 255 {
					return b[:start], fmt.Errorf("dnsmsg: bad escape in %q", name)
				}
				c = byte(v)
				i += 3
			} else {
				c = name[i+1]
				i++
			}
		}
		if label++; label > 63 {
			return b[:start], fmt.Errorf("dnsmsg: label longer than 63 octets in %q", name)
		}
		b = append(b, c)
	}
	if label > 0 { // no final dot
		b[lenAt] = byte(label)
		b = append(b, 0)
	}
	if len(b)-start > maxNameLen {
		return b[:start], fmt.Errorf("dnsmsg: name %q longer than %d octets", name, maxNameLen)
	}
	return b, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// CanonicalName is name in lower case and fully qualified, for comparisons.
func CanonicalName(name string) string {
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return strings.ToLower(name)
}

// NewQuery builds a query for one question; rd sets "recursion desired".
func NewQuery(id uint16, name string, qtype uint16, rd bool) ([]byte, error) {
	h := Header{ID: id, QDCount: 1}
	if rd {
		h.Flags |= FlagRD
	}
	b := h.append(make([]byte, 0, HeaderLen+len(name)+6))
	b, err := AppendName(b, name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, ClassINET), nil
}

// Reply builds the answer with rcode and no records to the query m (as miekg/dns's
// SetRcode): the query's ID, opcode and, for a standard query, its RD and CD bits,
// and its first question.
func Reply(m *Msg, rcode int) ([]byte, error) {
	h := Header{ID: m.ID, Flags: FlagQR | uint16(m.Opcode()&0xf)<<11 | uint16(rcode&0xf)}
	if m.Opcode() == OpcodeQuery {
		h.Flags |= m.Flags & (FlagRD | FlagCD)
	}
	return appendQuestion(h, m)
}

// Reject builds the answer a server gives a query it will not handle (a malformed
// one: FORMERR; another opcode than QUERY: NOTIMP), as miekg/dns's server did: the
// query's header flags with QR set, AA and Z cleared, opcode QUERY for FORMERR
// (the query's for NOTIMP), no records, its first question if it had one parsed.
func Reject(h Header, q *Question, rcode int) []byte {
	out := Header{ID: h.ID, Flags: h.Flags&^(FlagAA|FlagZ|0xf) | FlagQR | uint16(rcode&0xf)}
	if rcode != RcodeNotImplemented {
		out.Flags &^= 0xf << 11
	}
	if q != nil {
		if b, err := appendQuestion(out, &Msg{Question: []Question{*q}}); err == nil {
			return b
		}
	}
	return out.append(make([]byte, 0, HeaderLen))
}

func appendQuestion(h Header, m *Msg) ([]byte, error) {
	if len(m.Question) == 0 {
		return h.append(make([]byte, 0, HeaderLen)), nil
	}
	q := m.Question[0]
	h.QDCount = 1
	b := h.append(make([]byte, 0, HeaderLen+len(q.Name)+6))
	b, err := AppendName(b, q.Name)
	if err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint16(b, q.Type)
	return binary.BigEndian.AppendUint16(b, q.Class), nil
}
