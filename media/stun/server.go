// Package stun is voipgw's NAT self-test: an RFC 5780 server (two addresses, two
// ports, CHANGE-REQUEST honoured) and a client that classifies the mapping and
// filtering behaviour of the NAT between them.
//
// It lives under media because what it measures is the media path: whether the
// provider's RTP reaches a phone through the router's NAT (the seed asks for a
// full cone, "Gebruik Loose NAT / Full Cone NAT", and warns that symmetric NAT
// gives one-way audio). Messages are encoded in msg.go.
package stun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// CHANGE-REQUEST flags (RFC 5780 §7.2).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// Server answers BINDING requests on four sockets: every combination of two
// addresses and two ports (RFC 5780 §3: primary A1:P1, alternates A2 and P2).
type Server struct {
	// Conns[i][j] is the socket on address i and port j. The caller opens them
	// (so tests can open them in a network namespace) and Serve closes them.
	Conns [2][2]*net.UDPConn
	Log   *slog.Logger
}

// Listen opens the four sockets of addrs × ports.
func Listen(addrs [2]netip.Addr, ports [2]uint16) (*Server, error) {
	s := &Server{}
	for i, a := range addrs {
		for j, p := range ports {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, p)))
			if err != nil {
				s.close()
				return nil, fmt.Errorf("stun: listen %s: %w", netip.AddrPortFrom(a, p), err)
			}
			s.Conns[i][j] = c
		}
	}
	return s, nil
}

func (s *Server) close() {
	for i := range s.Conns {
		for j := range s.Conns[i] {
			if s.Conns[i][j] != nil {
				s.Conns[i][j].Close()
			}
		}
	}
}

func (s *Server) local(i, j int) netip.AddrPort {
	ap := s.Conns[i][j].LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Serve answers until ctx ends, then closes the sockets.
func (s *Server) Serve(ctx context.Context) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for i := range s.Conns {
		for j := range s.Conns[i] {
			if s.Conns[i][j] == nil {
				return errors.New("stun: Serve needs four sockets")
			}
		}
	}
	var wg sync.WaitGroup
	for i := range 2 {
		for j := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(i, j, log)
			}()
		}
	}
	<-ctx.Done()
	s.close()
	wg.Wait()
	return nil
}

func (s *Server) serve(i, j int, log *slog.Logger) {
	c := s.Conns[i][j]
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors surface here on Linux; keep serving
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		resp, ri, rj, err := s.answer(buf[:n], from, i, j)
		if err != nil {
			log.Debug("stun: request ignored", "from", from, "err", err)
			continue
		}
		if _, err := s.Conns[ri][rj].WriteToUDPAddrPort(resp, from); err != nil {
			log.Debug("stun: send", "to", from, "err", err)
		}
	}
}

// answer builds the response to one request that arrived on socket (i, j) and
// says which socket sends it.
func (s *Server) answer(req []byte, from netip.AddrPort, i, j int) ([]byte, int, int, error) {
	m, err := parse(req)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("decode: %w", err)
	}
	if m.typ != typeBindingRequest {
		return nil, 0, 0, fmt.Errorf("not a binding request: 0x%04x", m.typ)
	}
	ri, rj := i, j
	if v, ok := m.get(attrChangeRequest); ok {
		if len(v) != 4 {
			return nil, 0, 0, fmt.Errorf("CHANGE-REQUEST of %d bytes", len(v))
		}
		f := binary.BigEndian.Uint32(v)
		if f&changeIP != 0 {
			ri = 1 - i
		}
		if f&changePort != 0 {
			rj = 1 - j
		}
	}
	origin := s.local(ri, rj)
	other := s.local(1-i, 1-j) // OTHER-ADDRESS: differs from the receiving socket in both
	resp := build(typeBindingSuccess, m.tid,
		addrAttr(attrXORMappedAddress, from, true, m.tid),
		addrAttr(attrResponseOrigin, origin, false, m.tid),
		addrAttr(attrOtherAddress, other, false, m.tid))
	return resp, ri, rj, nil
}
