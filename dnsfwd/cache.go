package dnsfwd

// A small positive cache: upstream answers are kept for their smallest TTL, so a
// phone that asks again (SIP phones re-resolve their registrar and proxies every
// few minutes, and all phones of a site ask for the same names) is answered without
// the round trip to the upstream. Answers go out with their TTLs counted down. An
// answer for an allowlisted name is learned again before it goes out (Learn writes
// nothing when the kernel has the addresses, and puts back what the cap evicted),
// so a cached answer never names an address the firewall would drop.
//
// Answers are kept as the upstream sent them (a few hundred bytes each, with the
// offsets of their TTL fields), not as decoded messages: the daemon's memory is a
// goal of its own (BENCHMARKS.md).

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cacheMax bounds the cached answers.
const cacheMax = 512

type cacheKey struct {
	name          string // lower case
	qtype, qclass uint16
	rd, cd, do    bool // flags that change what an upstream answers
}

type cached struct {
	raw     []byte
	ttls    []int // offsets of the TTL fields (not of OPT's)
	stored  time.Time
	expires time.Time
}

type answerCache struct {
	mu sync.Mutex
	m  map[cacheKey]*cached
}

func keyOf(req *dns.Msg) cacheKey {
	q := req.Question[0]
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, rd: req.RecursionDesired, cd: req.CheckingDisabled}
	if opt := req.IsEdns0(); opt != nil {
		k.do = opt.Do()
	}
	return k
}

// put keeps raw, the upstream's answer to req, if it is a successful, complete
// answer with at least one record, for its smallest TTL (none if that is 0).
func (c *answerCache) put(req *dns.Msg, raw []byte, now time.Time) {
	if len(raw) < 12 || raw[2]&0x02 != 0 || raw[3]&0x0f != dns.RcodeSuccess || binary.BigEndian.Uint16(raw[6:]) == 0 {
		return
	}
	ttls, minTTL, err := ttlOffsets(raw)
	if err != nil || minTTL == 0 {
		return
	}
	e := &cached{raw: append([]byte(nil), raw...), ttls: ttls, stored: now, expires: now.Add(time.Duration(minTTL) * time.Second)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[cacheKey]*cached{}
	}
	if len(c.m) >= cacheMax {
		// Make room for an eighth at once (map order is random): one walk per 64
		// answers, not per answer.
		for k, old := range c.m {
			if len(c.m) < cacheMax*7/8 && now.Before(old.expires) {
				continue
			}
			delete(c.m, k)
		}
	}
	c.m[keyOf(req)] = e
}

// get returns the cached answer to req with the phone's ID, its question as the
// phone wrote it and the TTLs counted down; nil if there is none or it expired.
func (c *answerCache) get(req *dns.Msg, now time.Time) []byte {
	if len(req.Question) != 1 {
		return nil
	}
	k := keyOf(req)
	c.mu.Lock()
	e := c.m[k]
	if e != nil && !now.Before(e.expires) {
		delete(c.m, k)
		e = nil
	}
	c.mu.Unlock()
	if e == nil {
		return nil
	}
	out := append([]byte(nil), e.raw...)
	binary.BigEndian.PutUint16(out, req.Id)
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, off := range e.ttls {
		ttl := binary.BigEndian.Uint32(out[off:])
		binary.BigEndian.PutUint32(out[off:], ttl-min(age, ttl))
	}
	// The same name up to case (the key is lower case): the phone's spelling back.
	name := req.Question[0].Name
	for off, i := 12, 0; off < len(out) && out[off] != 0; {
		n := int(out[off])
		if n&0xc0 != 0 {
			break // compressed: left as it is
		}
		for j := 1; j <= n && off+j < len(out) && i < len(name); j++ {
			out[off+j] = name[i]
			i++
		}
		off += n + 1
		i++ // the dot
	}
	return out
}

var errWire = errors.New("dns: malformed message")

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(b []byte, off int) (int, error) {
	for off < len(b) {
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			return off + 2, nil
		case l&0xc0 != 0:
			return 0, errWire
		}
		off += l + 1
	}
	return 0, errWire
}

// ttlOffsets walks the records of a message and returns where their TTLs are
// (OPT's "TTL" is flags, not a time) and the smallest of them.
func ttlOffsets(b []byte) ([]int, uint32, error) {
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rrs := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := 12
	var err error
	for range qd {
		if off, err = skipName(b, off); err != nil {
			return nil, 0, err
		}
		off += 4
	}
	var out []int
	minTTL := uint32(1<<31 - 1)
	for range rrs {
		if off, err = skipName(b, off); err != nil || off+10 > len(b) {
			return nil, 0, errWire
		}
		if binary.BigEndian.Uint16(b[off:]) != dns.TypeOPT {
			out = append(out, off+4)
			minTTL = min(minTTL, binary.BigEndian.Uint32(b[off+4:]))
		}
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
	}
	if off != len(b) {
		return nil, 0, errWire
	}
	return out, minTTL, nil
}
