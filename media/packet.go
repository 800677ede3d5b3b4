package media

import (
	"encoding/binary"
	"fmt"
)

// keepaliveTTL is the hop limit of a keep-alive: as a phone's packet would leave
// the router (the router is one hop).
const keepaliveTTL = 63

// Packet is the keep-alive for f as the router puts it on the wire from a raw
// socket: an IPv4 or IPv6 header with the phone's address as source, and a UDP
// header from the phone's port to the remote's with no payload (RFC 6263 §4.1).
func Packet(f Flow) ([]byte, error) {
	src, dst := f.Phone.Addr(), f.Remote.Addr()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("keepalive: flow %s → %s: want two addresses of one family", f.Phone, f.Remote)
	}
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], f.Phone.Port())
	binary.BigEndian.PutUint16(udp[2:], f.Remote.Port())
	binary.BigEndian.PutUint16(udp[4:], 8)
	s, d := src.AsSlice(), dst.AsSlice()
	// Pseudo-header: addresses, protocol, UDP length.
	sum := checksumAdd(0, s)
	sum = checksumAdd(sum, d)
	sum += 17 + 8
	sum = checksumAdd(sum, udp)
	c := ^fold(sum)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in IPv4 and is invalid in IPv6
	}
	binary.BigEndian.PutUint16(udp[6:], c)

	if src.Is4() {
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], 28)
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF, as phones send RTP
		ip[8] = keepaliveTTL
		ip[9] = 17
		copy(ip[12:], s)
		copy(ip[16:], d)
		binary.BigEndian.PutUint16(ip[10:], ^fold(checksumAdd(0, ip)))
		return append(ip, udp...), nil
	}
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], 8)
	ip[6] = 17
	ip[7] = keepaliveTTL
	copy(ip[8:], s)
	copy(ip[24:], d)
	return append(ip, udp...), nil
}

func checksumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
