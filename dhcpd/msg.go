package dhcpd

// The DHCPv4 message codec (RFC 2131 section 2, RFC 2132 options) of exactly what
// the server reads and writes. It replaces github.com/insomniacslk/dhcp, whose
// packages (with u-root/uio and pierrec/lz4) cost ~330 KB of the stripped mipsle
// binary (BENCHMARKS.md §4); that library stays a test dependency, and msg_test.go
// checks this codec against it in both directions, byte for byte.
//
// Its choices follow that library's, so the server behaves on the wire as before:
// repeated options are concatenated (RFC 3396), options without the End option are
// rejected (a message with no options at all is not), options are written sorted by code with the relay agent option (82)
// last, values over 255 bytes are split, and replies are padded to the 300 bytes of
// a BOOTP message.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Op codes, message types and option codes the server uses.
const (
	opRequest = 1
	opReply   = 2

	msgDiscover = 1
	msgOffer    = 2
	msgRequest  = 3
	msgDecline  = 4
	msgAck      = 5
	msgNak      = 6
	msgRelease  = 7
	msgInform   = 8

	optPad           = 0
	optSubnetMask    = 1
	optRouter        = 3
	optDNS           = 6
	optHostName      = 12
	optNTP           = 42
	optRequestedIP   = 50
	optLeaseTime     = 51
	optMessageType   = 53
	optServerID      = 54
	optRenewalTime   = 58
	optRebindingTime = 59
	optVendorClass   = 60
	optClientID      = 61
	optRelayAgent    = 82
	optEnd           = 255

	serverPort = 67
	clientPort = 68

	flagBroadcast = 0x8000

	headerLen   = 236 // op .. file
	bootpMinLen = 300 // RFC 951: relays and old servers drop shorter messages
)

var magicCookie = [4]byte{99, 130, 83, 99}

// Message is one DHCPv4 message. Addresses are always IPv4 (0.0.0.0 when unset);
// Options keep the order they were read or set in, one entry per code.
type Message struct {
	Op      uint8
	HType   uint8
	Hops    uint8
	XID     [4]byte
	Secs    uint16
	Flags   uint16
	CIAddr  netip.Addr
	YIAddr  netip.Addr
	SIAddr  netip.Addr
	GIAddr  netip.Addr
	CHAddr  []byte // hlen bytes of the 16-byte chaddr field (hlen capped at 16)
	SName   string // up to the first NUL
	File    string // up to the first NUL
	Options []Option
}

var (
	errShort  = errors.New("dhcp: message shorter than its fixed header")
	errCookie = errors.New("dhcp: no DHCP magic cookie")
	errOption = errors.New("dhcp: option runs past the end of the message")
	errNoEnd  = errors.New("dhcp: options have no End option")
)

// ParseMessage decodes b. It never panics and keeps no reference to b.
func ParseMessage(b []byte) (*Message, error) {
	if len(b) < headerLen+len(magicCookie) {
		return nil, fmt.Errorf("%w: %d bytes", errShort, len(b))
	}
	if [4]byte(b[headerLen:headerLen+4]) != magicCookie {
		return nil, errCookie
	}
	hlen := min(int(b[2]), 16)
	m := &Message{
		Op: b[0], HType: b[1], Hops: b[3], XID: [4]byte(b[4:8]),
		Secs: binary.BigEndian.Uint16(b[8:10]), Flags: binary.BigEndian.Uint16(b[10:12]),
		CIAddr: netip.AddrFrom4([4]byte(b[12:16])), YIAddr: netip.AddrFrom4([4]byte(b[16:20])),
		SIAddr: netip.AddrFrom4([4]byte(b[20:24])), GIAddr: netip.AddrFrom4([4]byte(b[24:28])),
		CHAddr: slices.Clone(b[28 : 28+hlen]),
		SName:  cString(b[44:108]), File: cString(b[108:236]),
	}
	rest := b[headerLen+4:]
	if len(rest) == 0 {
		return m, nil // no options at all; but options must close with End
	}
	for len(rest) > 0 {
		code := rest[0]
		switch code {
		case optPad:
			rest = rest[1:]
			continue
		case optEnd:
			return m, nil
		}
		if len(rest) < 2 || len(rest) < 2+int(rest[1]) {
			return nil, fmt.Errorf("%w: option %d", errOption, code)
		}
		v := rest[2 : 2+int(rest[1])]
		rest = rest[2+int(rest[1]):]
		// RFC 3396: the values of an option that appears more than once are one
		// value, concatenated in order.
		if i := m.index(code); i >= 0 {
			m.Options[i].Value += string(v)
		} else {
			m.Options = append(m.Options, Option{code, string(v)})
		}
	}
	return nil, errNoEnd
}

func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func (m *Message) index(code uint8) int {
	return slices.IndexFunc(m.Options, func(o Option) bool { return o.Code == code })
}

// Opt returns the value of an option and whether the message has it.
func (m *Message) Opt(code uint8) (string, bool) {
	if i := m.index(code); i >= 0 {
		return m.Options[i].Value, true
	}
	return "", false
}

// SetOpt adds an option or replaces its value.
func (m *Message) SetOpt(code uint8, v string) {
	if i := m.index(code); i >= 0 {
		m.Options[i].Value = v
		return
	}
	m.Options = append(m.Options, Option{code, v})
}

// MessageType is option 53, 0 when missing or not one byte.
func (m *Message) MessageType() uint8 {
	if v, _ := m.Opt(optMessageType); len(v) == 1 {
		return v[0]
	}
	return 0
}

// OptAddr is an option holding one IPv4 address; invalid when missing or not 4 bytes.
func (m *Message) OptAddr(code uint8) netip.Addr {
	if v, _ := m.Opt(code); len(v) == 4 {
		return netip.AddrFrom4([4]byte([]byte(v)))
	}
	return netip.Addr{}
}

// Marshal encodes m as it goes on the wire.
func (m *Message) Marshal() []byte {
	b := make([]byte, headerLen, bootpMinLen)
	b[0], b[1], b[2], b[3] = m.Op, m.HType, uint8(len(m.CHAddr)), m.Hops
	copy(b[4:8], m.XID[:])
	binary.BigEndian.PutUint16(b[8:10], m.Secs)
	binary.BigEndian.PutUint16(b[10:12], m.Flags)
	for i, a := range []netip.Addr{m.CIAddr, m.YIAddr, m.SIAddr, m.GIAddr} {
		if a.Is4() {
			a4 := a.As4()
			copy(b[12+4*i:], a4[:])
		}
	}
	copy(b[28:44], m.CHAddr)
	copy(b[44:107], m.SName) // a NUL always ends them
	copy(b[108:235], m.File)
	b = append(b, magicCookie[:]...)
	// Sorted by code; RFC 3046 2.1: the relay agent option comes last.
	key := func(c uint8) int {
		if c == optRelayAgent {
			return 256
		}
		return int(c)
	}
	opts := slices.SortedStableFunc(slices.Values(m.Options), func(x, y Option) int { return key(x.Code) - key(y.Code) })
	for _, o := range opts {
		if o.Code == optPad || o.Code == optEnd {
			continue
		}
		v := o.Value
		for first := true; first || len(v) > 0; first = false {
			// RFC 3396: a value longer than 255 bytes goes in several options.
			n := min(len(v), 255)
			b = append(b, o.Code, uint8(n))
			b = append(b, v[:n]...)
			v = v[n:]
		}
	}
	b = append(b, optEnd)
	for len(b) < bootpMinLen {
		b = append(b, optPad)
	}
	return b
}

// newReply starts the answer to req (RFC 2131 table 3): the request's transaction,
// client hardware address, flags and relay address, its relay agent information
// (RFC 3046) and client identifier (RFC 6842) copied, and the message type.
func newReply(req *Message, mt uint8) *Message {
	r := &Message{Op: opReply, HType: req.HType, XID: req.XID, Flags: req.Flags, CHAddr: req.CHAddr,
		CIAddr: zero4, YIAddr: zero4, SIAddr: zero4, GIAddr: req.GIAddr}
	if req.Op != opRequest {
		r.Op = opRequest
	}
	for _, c := range []uint8{optRelayAgent, optClientID} {
		if v, _ := req.Opt(c); v != "" {
			r.SetOpt(c, v)
		}
	}
	r.SetOpt(optMessageType, string([]byte{mt}))
	return r
}

var zero4 = netip.AddrFrom4([4]byte{})

func addrBytes(as ...netip.Addr) string {
	b := make([]byte, 0, 4*len(as))
	for _, a := range as {
		a4 := a.As4()
		b = append(b, a4[:]...)
	}
	return string(b)
}

func u32Bytes(v uint32) string {
	return string(binary.BigEndian.AppendUint32(nil, v))
}
