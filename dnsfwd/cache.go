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
	"strings"
	"sync"
	"time"

	"github.com/voipgw/voipgw/dnsmsg"
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

func keyOf(req *request) cacheKey {
	q := req.q
	k := cacheKey{name: strings.ToLower(q.Name), qtype: q.Type, qclass: q.Class,
		rd: req.m.RecursionDesired(), cd: req.m.CheckingDisabled()}
	if opt := req.m.OPT(); opt != nil {
		k.do = opt.DO()
	}
	return k
}

// put keeps raw, the upstream's answer to req, if it is a successful, complete
// answer with at least one record, for its smallest TTL (none if that is 0).
func (c *answerCache) put(req *request, raw []byte, now time.Time) {
	if len(raw) < dnsmsg.HeaderLen || raw[2]&0x02 != 0 || raw[3]&0x0f != dnsmsg.RcodeSuccess || binary.BigEndian.Uint16(raw[6:]) == 0 {
		return
	}
	ttls, minTTL, err := dnsmsg.TTLOffsets(raw)
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
func (c *answerCache) get(req *request, now time.Time) []byte {
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
	binary.BigEndian.PutUint16(out, req.m.ID)
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, off := range e.ttls {
		ttl := binary.BigEndian.Uint32(out[off:])
		binary.BigEndian.PutUint32(out[off:], ttl-min(age, ttl))
	}
	// The same name up to case (the key is lower case): the phone's spelling back,
	// byte for byte, when both are written out in full (the usual case; a
	// compressed one is left as it is).
	if n := plainNameLen(req.raw, req.q.NameOff); n > 0 && plainNameLen(out, dnsmsg.HeaderLen) == n &&
		dnsmsg.EqualNames(out, dnsmsg.HeaderLen, req.raw, req.q.NameOff) {
		copy(out[dnsmsg.HeaderLen:], req.raw[req.q.NameOff:req.q.NameOff+n])
	}
	return out
}

// plainNameLen is the length of the uncompressed name at off, 0 if it is
// compressed or malformed.
func plainNameLen(b []byte, off int) int {
	for o := off; o < len(b); {
		l := int(b[o])
		switch {
		case l == 0:
			return o + 1 - off
		case l&0xc0 != 0:
			return 0
		}
		o += l + 1
	}
	return 0
}
