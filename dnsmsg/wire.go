package dnsmsg

import "encoding/binary"

// Operations on a message's bytes, without decoding it: the forwarder passes the
// upstream's answers on as they came and only touches what it must.

// record is where one resource record lies in a message.
type record struct {
	start, end int // the whole record
	typ        uint16
	ttlOff     int
}

// records walks the question and record sections of b: it returns the offset
// after the question section and the records in order. Sections must hold what
// the header counts; bytes after the last record are ignored.
func records(b []byte) (h Header, qEnd int, recs []record, err error) {
	if h, err = ParseHeader(b); err != nil {
		return h, 0, nil, err
	}
	off := HeaderLen
	for i := 0; i < int(h.QDCount); i++ {
		if off, err = SkipName(b, off); err != nil {
			return h, 0, nil, err
		}
		if off += 4; off > len(b) {
			return h, 0, nil, errf("question %d cut short", i)
		}
	}
	qEnd = off
	n := int(h.ANCount) + int(h.NSCount) + int(h.ARCount)
	recs = make([]record, 0, min(n, (len(b)-off)/11+1))
	for i := 0; i < n; i++ {
		r := record{start: off}
		if off, err = SkipName(b, off); err != nil {
			return h, 0, nil, err
		}
		if off+10 > len(b) {
			return h, 0, nil, errf("record %d cut short", i)
		}
		r.typ = binary.BigEndian.Uint16(b[off:])
		r.ttlOff = off + 4
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if off > len(b) {
			return h, 0, nil, errf("record %d runs past the message", i)
		}
		r.end = off
		recs = append(recs, r)
	}
	return h, qEnd, recs, nil
}

// TTLOffsets returns where the TTL fields of b's records are (OPT's "TTL" holds
// flags, not a time, and is left out) and the smallest TTL among them. b must
// end with its last record.
func TTLOffsets(b []byte) ([]int, uint32, error) {
	_, end, recs, err := records(b)
	if err != nil {
		return nil, 0, err
	}
	if len(recs) > 0 {
		end = recs[len(recs)-1].end
	}
	if end != len(b) {
		return nil, 0, errf("%d bytes after the last record", len(b)-end)
	}
	var out []int
	minTTL := uint32(1<<31 - 1)
	for _, r := range recs {
		if r.typ != TypeOPT {
			out = append(out, r.ttlOff)
			minTTL = min(minTTL, binary.BigEndian.Uint32(b[r.ttlOff:]))
		}
	}
	return out, minTTL, nil
}

// SetTC sets the truncation bit.
func SetTC(b []byte) {
	if len(b) >= HeaderLen {
		b[2] |= byte(FlagTC >> 8)
	}
}

// Truncate returns the message b cut to fit size bytes (at least MinMsgSize), as a
// DNS server truncates a UDP answer (RFC 2181 §9): it keeps the header, the
// question and as many whole records from the start as fit, then the OPT record
// (moved to the end, as it must stay), and sets TC if records were left out. b is
// returned unchanged if it fits. Records after an OPT that is not the last one are
// left out too (the records kept are one run of b's bytes, so compression pointers
// in them stay right); so is every record if a kept name pointed past the cut.
func Truncate(b []byte, size int) ([]byte, error) {
	size = max(size, MinMsgSize)
	if len(b) <= size {
		return b, nil
	}
	h, qEnd, recs, err := records(b)
	if err != nil {
		return nil, err
	}
	opt := -1
	for i, r := range recs {
		if r.typ == TypeOPT && i >= int(h.ANCount)+int(h.NSCount) {
			opt = i
		}
	}
	var optBytes []byte
	budget := size
	limit := len(recs)
	if opt >= 0 {
		optBytes = b[recs[opt].start:recs[opt].end]
		budget -= len(optBytes)
		limit = opt
	}
	nonOPT := len(recs)
	if opt >= 0 {
		nonOPT--
	}
	keep := 0
	for keep < limit && recs[keep].end <= budget {
		keep++
	}
	cut := qEnd
	if keep > 0 {
		cut = recs[keep-1].end
	}
	// Names in what is kept must not point into what is cut off.
	if !namesBelow(b, HeaderLen, int(h.QDCount), recs[:keep], cut) {
		keep, cut = 0, qEnd
		if !namesBelow(b, HeaderLen, int(h.QDCount), nil, cut) {
			cut, h.QDCount = HeaderLen, 0
		}
	}
	out := make([]byte, 0, cut+len(optBytes))
	out = append(out, b[:cut]...)
	out = append(out, optBytes...)
	var counts [3]uint16
	bounds := [3]int{int(h.ANCount), int(h.ANCount) + int(h.NSCount), len(recs)}
	for i := 0; i < keep; i++ {
		switch {
		case i < bounds[0]:
			counts[0]++
		case i < bounds[1]:
			counts[1]++
		default:
			counts[2]++
		}
	}
	if opt >= 0 {
		counts[2]++
	}
	binary.BigEndian.PutUint16(out[4:], h.QDCount)
	binary.BigEndian.PutUint16(out[6:], counts[0])
	binary.BigEndian.PutUint16(out[8:], counts[1])
	binary.BigEndian.PutUint16(out[10:], counts[2])
	if keep < nonOPT {
		SetTC(out)
	}
	return out, nil
}

// namesBelow checks that the qd question names from off and the names of recs
// (owners, and the names in the data of the types that carry compressed ones)
// read nothing at or after limit.
func namesBelow(b []byte, off, qd int, recs []record, limit int) bool {
	below := func(off int) bool {
		it := newLabels(b[:limit], off)
		for {
			l, err := it.label()
			if err != nil {
				return false
			}
			if l == nil {
				return true
			}
		}
	}
	for range qd {
		if !below(off) {
			return false
		}
		next, err := SkipName(b, off)
		if err != nil {
			return false
		}
		off = next + 4
	}
	for _, r := range recs {
		if !below(r.start) {
			return false
		}
		next, _ := SkipName(b, r.start)
		data := next + 10
		if data == r.end {
			continue
		}
		switch r.typ {
		case TypeCNAME, TypeNS, TypePTR:
			if !below(data) {
				return false
			}
		case TypeMX:
			if data+2 >= r.end || !below(data+2) {
				return false
			}
		case TypeSOA:
			n, err := SkipName(b[:r.end], data)
			if err != nil || !below(data) || !below(n) {
				return false
			}
		}
	}
	return true
}
