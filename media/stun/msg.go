package stun

// The STUN messages voipgw needs (RFC 5389 header, BINDING request and success,
// XOR-MAPPED-ADDRESS, RFC 5780 CHANGE-REQUEST, RESPONSE-ORIGIN and OTHER-ADDRESS,
// FINGERPRINT), encoded here: pion/stun brought pion/dtls with it, and with it
// crypto/tls, x509, gob and elliptic curves, about 0.4 MB of the binary for a
// 20-byte header and four attributes (BENCHMARKS.md). The tests check this
// encoding against pion/stun.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

const (
	magicCookie = 0x2112A442
	headerLen   = 20

	typeBindingRequest = 0x0001
	typeBindingSuccess = 0x0101

	attrChangeRequest    = 0x0003
	attrXORMappedAddress = 0x0020
	attrFingerprint      = 0x8028
	attrResponseOrigin   = 0x802b
	attrOtherAddress     = 0x802c

	fingerprintXOR = 0x5354554e
)

// message is a decoded STUN message: its type, transaction ID and attributes
// (values point into the decoded bytes).
type message struct {
	typ   uint16
	tid   [12]byte
	attrs []attribute
}

type attribute struct {
	typ uint16
	val []byte
}

func newTransactionID() ([12]byte, error) {
	var tid [12]byte
	_, err := rand.Read(tid[:])
	return tid, err
}

// get returns the value of the first attribute of type typ.
func (m *message) get(typ uint16) ([]byte, bool) {
	for _, a := range m.attrs {
		if a.typ == typ {
			return a.val, true
		}
	}
	return nil, false
}

// build encodes a message with the attributes and a FINGERPRINT.
func build(typ uint16, tid [12]byte, attrs ...attribute) []byte {
	b := make([]byte, headerLen, 128)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], magicCookie)
	copy(b[8:], tid[:])
	for _, a := range attrs {
		b = binary.BigEndian.AppendUint16(b, a.typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.val)))
		b = append(b, a.val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	// The length covers the FINGERPRINT, which covers everything before it.
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-headerLen+8))
	fp := crc32.ChecksumIEEE(b) ^ fingerprintXOR
	b = binary.BigEndian.AppendUint16(b, attrFingerprint)
	b = binary.BigEndian.AppendUint16(b, 4)
	return binary.BigEndian.AppendUint32(b, fp)
}

// parse decodes a STUN message (RFC 5389 §6: first two bits zero, the magic
// cookie, a length that matches). A FINGERPRINT, if present, must be right.
func parse(b []byte) (message, error) {
	var m message
	if len(b) < headerLen {
		return m, errors.New("stun: short message")
	}
	if b[0]&0xc0 != 0 || binary.BigEndian.Uint32(b[4:]) != magicCookie {
		return m, errors.New("stun: not a STUN message")
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n%4 != 0 || headerLen+n != len(b) {
		return m, fmt.Errorf("stun: length %d for %d bytes", n, len(b))
	}
	m.typ = binary.BigEndian.Uint16(b)
	copy(m.tid[:], b[8:20])
	for off := headerLen; off < len(b); {
		if off+4 > len(b) {
			return m, errors.New("stun: truncated attribute")
		}
		t, l := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+l > len(b) {
			return m, errors.New("stun: truncated attribute")
		}
		if t == attrFingerprint {
			if l != 4 || off+8 != len(b) || binary.BigEndian.Uint32(b[off+4:]) != crc32.ChecksumIEEE(b[:off])^fingerprintXOR {
				return m, errors.New("stun: bad FINGERPRINT")
			}
		}
		m.attrs = append(m.attrs, attribute{typ: t, val: b[off+4 : off+4+l]})
		off += 4 + (l+3)&^3
	}
	return m, nil
}

// addrAttr encodes a MAPPED-ADDRESS-style value (RESPONSE-ORIGIN, OTHER-ADDRESS);
// with xor, XOR-MAPPED-ADDRESS (RFC 5389 §15.2).
func addrAttr(typ uint16, ap netip.AddrPort, xor bool, tid [12]byte) attribute {
	a := ap.Addr().Unmap()
	fam, ip := byte(1), a.AsSlice()
	if a.Is6() {
		fam = 2
	}
	port := ap.Port()
	if xor {
		port ^= magicCookie >> 16
		xorAddr(ip, tid)
	}
	v := []byte{0, fam, byte(port >> 8), byte(port)}
	return attribute{typ: typ, val: append(v, ip...)}
}

// xorAddr XORs an address with the cookie (and, for IPv6, the transaction ID).
func xorAddr(ip []byte, tid [12]byte) {
	var key [16]byte
	binary.BigEndian.PutUint32(key[:], magicCookie)
	copy(key[4:], tid[:])
	for i := range ip {
		ip[i] ^= key[i]
	}
}

// addrOf decodes an address attribute of m (XORed for XOR-MAPPED-ADDRESS).
func (m *message) addrOf(typ uint16) (netip.AddrPort, error) {
	v, ok := m.get(typ)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("stun: no attribute 0x%04x", typ)
	}
	if len(v) < 4 || !((v[1] == 1 && len(v) == 8) || (v[1] == 2 && len(v) == 20)) {
		return netip.AddrPort{}, fmt.Errorf("stun: bad address attribute 0x%04x", typ)
	}
	port := binary.BigEndian.Uint16(v[2:])
	ip := append([]byte(nil), v[4:]...)
	if typ == attrXORMappedAddress {
		port ^= magicCookie >> 16
		xorAddr(ip, m.tid)
	}
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port), nil
}
