package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ListenUDP opens a UDP socket in ns bound to local (SO_REUSEADDR is not needed:
// each namespace has its own ports). The socket stays in ns; any goroutine may use it.
func ListenUDP(ns *NS, local netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen udp %s in %s: %w", local, ns.Name, err)
	}
	return c, nil
}

// Exchange sends msg from c to dst and waits up to timeout for one datagram back
// (from anyone). It returns the reply and its sender, or ok false on timeout.
func Exchange(c *net.UDPConn, dst netip.AddrPort, msg string, timeout time.Duration) (reply string, from netip.AddrPort, ok bool, err error) {
	if _, err := c.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
		return "", netip.AddrPort{}, false, fmt.Errorf("send to %s: %w", dst, err)
	}
	return Receive(c, timeout)
}

// Receive waits up to timeout for one datagram on c.
func Receive(c *net.UDPConn, timeout time.Duration) (string, netip.AddrPort, bool, error) {
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "", netip.AddrPort{}, false, nil
	}
	if err != nil {
		return "", netip.AddrPort{}, false, err
	}
	return string(buf[:n]), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), true, nil
}

// LatchingPeer is a media server that behaves like the provider's platform with
// symmetric RTP: it sends its media only to the address and port its first packet
// came from (the latch), whatever the source of later packets. Every packet it
// receives is answered with one packet to the latch.
type LatchingPeer struct {
	Addr     netip.AddrPort
	conn     *net.UDPConn
	mu       sync.Mutex
	latch    netip.AddrPort
	received atomic.Int64
	wg       sync.WaitGroup
}

// StartLatchingPeer listens on addr in the internet namespace; it stops with the lab.
func (l *Lab) StartLatchingPeer(addr netip.AddrPort) (*LatchingPeer, error) {
	c, err := ListenUDP(l.Inet, addr)
	if err != nil {
		return nil, err
	}
	p := &LatchingPeer{Addr: addr, conn: c}
	p.wg.Add(1)
	go p.serve()
	l.closers = append(l.closers, func() error { c.Close(); p.wg.Wait(); return nil })
	return p, nil
}

func (p *LatchingPeer) serve() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p.received.Add(1)
		p.mu.Lock()
		if !p.latch.IsValid() {
			p.latch = from
		}
		to := p.latch
		p.mu.Unlock()
		p.conn.WriteToUDPAddrPort(append([]byte("media to "+to.String()+" for "), buf[:n]...), to)
	}
}

// Latch is where the peer sends its media (zero before the first packet).
func (p *LatchingPeer) Latch() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latch
}

// Received counts the packets the peer got.
func (p *LatchingPeer) Received() int64 { return p.received.Load() }
