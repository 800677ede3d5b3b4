package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Service is one listener of the fake platform.
type Service struct {
	Proto string // "udp" or "tcp"
	Addr  netip.AddrPort
}

// PlatformServices are the listeners StartPlatform opens on the internet side.
var PlatformServices = []Service{
	{"udp", netip.AddrPortFrom(SBC, 5060)},
	{"tcp", netip.AddrPortFrom(SBC, 5060)},
	{"tcp", netip.AddrPortFrom(SBC, 5061)},
	{"udp", netip.AddrPortFrom(SBC, 40000)}, // RTP echo
	{"udp", netip.AddrPortFrom(SBC2, 5060)},
	{"tcp", netip.AddrPortFrom(Platform, 443)},
	{"udp", netip.AddrPortFrom(SBC6, 5060)},
	{"udp", netip.AddrPortFrom(Unlisted, 5060)},
	{"tcp", netip.AddrPortFrom(Unlisted, 80)},
	{"tcp", netip.AddrPortFrom(Unlisted, 5060)},
	{"udp", netip.AddrPortFrom(Unlisted6, 5060)},
}

// StartPlatform starts, in the inet namespace, the lab's name server and UDP echo /
// TCP accept listeners on PlatformServices. They stop when the lab closes.
func (l *Lab) StartPlatform() error {
	var conns []interface{ Close() error }
	var wg sync.WaitGroup
	err := l.Inet.Do(func() error {
		for _, s := range PlatformServices {
			switch s.Proto {
			case "udp":
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(s.Addr))
				if err != nil {
					return fmt.Errorf("listen udp %s: %w", s.Addr, err)
				}
				conns = append(conns, c)
				wg.Add(1)
				go func() { defer wg.Done(); udpEcho(c) }()
			case "tcp":
				ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(s.Addr))
				if err != nil {
					return fmt.Errorf("listen tcp %s: %w", s.Addr, err)
				}
				conns = append(conns, ln)
				wg.Add(1)
				go func() { defer wg.Done(); tcpEcho(ln) }()
			}
		}
		// Sockets are opened here, on the thread that is inside the namespace; the
		// server goroutines may run on any thread.
		zone := &Zone{}
		for name, addrs := range DNSNames {
			zone.Set(name, addrs...)
		}
		_, stop, err := ServeZone(netip.AddrPortFrom(DNSServer, 53), zone)
		if err != nil {
			return fmt.Errorf("lab DNS server: %w", err)
		}
		conns = append(conns, closerFunc(stop))
		return nil
	})
	l.closers = append(l.closers, func() error {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		return nil
	})
	return err
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// EchoSource sends one datagram from c to a UDP echo of StartPlatform and returns
// the source the echo saw (after the gateway's NAT: the phone's mapping).
func EchoSource(c *net.UDPConn, dst netip.AddrPort) (netip.AddrPort, error) {
	reply, _, ok, err := Exchange(c, dst, "probe", 3*time.Second)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%s → %s: no echo", c.LocalAddr(), dst)
	}
	f, _, _ := strings.Cut(reply, " ")
	return netip.ParseAddrPort(f)
}

func udpEcho(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		// Echo what came and where it came from: tests see the NATed source.
		reply := append([]byte(from.String()+" "), buf[:n]...)
		c.WriteToUDPAddrPort(reply, from)
	}
}

func tcpEcho(ln *net.TCPListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
		}()
	}
}

// Outcome of one connection attempt.
type Outcome string

const (
	Reached Outcome = "reached" // got an answer from the destination
	Refused Outcome = "refused" // an RST or ICMP error came back
	Silent  Outcome = "silent"  // nothing came back before the timeout (dropped)
)

// Probe sends from ns to dst over proto ("udp" or "tcp") and reports what happened.
// src may be the zero AddrPort (any). For UDP it sends one datagram and waits for
// the echo; for TCP it connects.
func Probe(ns *NS, proto string, src, dst netip.AddrPort, timeout time.Duration) (Outcome, string, error) {
	var out Outcome
	var reply string
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if src.IsValid() {
			if proto == "udp" {
				d.LocalAddr = net.UDPAddrFromAddrPort(src)
			} else {
				d.LocalAddr = net.TCPAddrFromAddrPort(src)
			}
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
				return serr
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := d.DialContext(ctx, proto, dst.String())
		if err != nil {
			out = classify(err)
			if out == "" {
				return err
			}
			return nil
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if proto == "udp" {
			if _, err := c.Write([]byte("probe")); err != nil {
				out = classify(err)
				return nil
			}
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			out = classify(err)
			if out == "" {
				return err
			}
			return nil
		}
		out, reply = Reached, strings.TrimSpace(string(buf[:n]))
		return nil
	})
	return out, reply, err
}

func classify(err error) Outcome {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return Refused
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return Silent
	}
	return ""
}
