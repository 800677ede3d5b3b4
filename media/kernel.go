package media

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/config"
)

// Filter says which conntrack flows are media flows of the VoIP network: UDP,
// original source in one of Subnets, original destination port in Ports.
type Filter struct {
	Subnets []netip.Prefix
	Ports   []config.PortSpan
}

// Match returns the media flow of a conntrack flow, ok false for any other flow.
func (f Filter) Match(ct *conntrack.Flow) (Flow, bool) {
	if ct == nil {
		return Flow{}, false
	}
	o := ct.TupleOrig
	if o.Proto.Protocol != unix.IPPROTO_UDP {
		return Flow{}, false
	}
	src := o.IP.SourceAddress.Unmap()
	if !slices.ContainsFunc(f.Subnets, func(p netip.Prefix) bool { return p.Contains(src) }) {
		return Flow{}, false
	}
	dp := o.Proto.DestinationPort
	if !slices.ContainsFunc(f.Ports, func(p config.PortSpan) bool { return p.First <= dp && dp <= p.Last }) {
		return Flow{}, false
	}
	return Flow{Phone: netip.AddrPortFrom(src, o.Proto.SourcePort),
		Remote: netip.AddrPortFrom(o.IP.DestinationAddress.Unmap(), dp)}, true
}

// Watch follows conntrack NEW and DESTROY events of media flows in the calling
// thread's network namespace. The flows that exist already (a daemon restart or
// SIGHUP) come first, as NEW events. The channel closes when ctx ends or the
// event socket fails (the kernel drops events when the socket's buffer overflows;
// the caller restarts the watch and so resynchronises from a fresh dump).
func Watch(ctx context.Context, f Filter) (<-chan Event, error) {
	listen, err := conntrack.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	// Events arrive for every flow of the router; a media burst must not overflow.
	_ = listen.SetReadBuffer(1 << 20)
	raw := make(chan conntrack.Event, 256)
	errc, err := listen.Listen(raw, 1, []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy})
	if err != nil {
		listen.Close()
		return nil, fmt.Errorf("conntrack events: %w", err)
	}
	// Dump after joining the groups: a flow born in between is seen twice (started
	// ignores the second), none is missed.
	dumpc, err := conntrack.Dial(nil)
	if err != nil {
		listen.Close()
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	existing, err := dumpc.Dump(nil)
	dumpc.Close()
	if err != nil {
		listen.Close()
		return nil, fmt.Errorf("conntrack dump: %w", err)
	}
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer listen.Close()
		emit := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for i := range existing {
			if fl, ok := f.Match(&existing[i]); ok && !emit(Event{Flow: fl}) {
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errc:
				_ = err // the consumer sees the close; Run reports it
				return
			case ev := <-raw:
				if ev.Flow == nil || (ev.Type != conntrack.EventNew && ev.Type != conntrack.EventDestroy) {
					continue
				}
				if fl, ok := f.Match(ev.Flow); ok && !emit(Event{Flow: fl, Destroy: ev.Type == conntrack.EventDestroy}) {
					return
				}
			}
		}
	}()
	return out, nil
}

// RawSender sends keep-alives from raw sockets (IP_HDRINCL), so the packet can
// carry the phone's address as its source without the router owning it. It is
// generated locally, so it passes OUTPUT and POSTROUTING (not FORWARD); with the
// flow's original tuple it is part of the phone's conntrack entry and gets the
// entry's source NAT.
type RawSender struct {
	fd4, fd6 int
	ct       *conntrack.Conn
}

// NewRawSender opens the sockets in the calling thread's network namespace
// (needs CAP_NET_RAW and, for the conntrack check, CAP_NET_ADMIN).
func NewRawSender() (*RawSender, error) {
	s := &RawSender{fd4: -1, fd6: -1}
	var err error
	if s.fd4, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
		return nil, fmt.Errorf("raw IPv4 socket: %w", err)
	}
	// IPPROTO_RAW implies IP_HDRINCL (and IPV6_HDRINCL since Linux 4.5). IPv6 may
	// be off on the router: then only IPv4 flows get keep-alives.
	if fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err == nil {
		s.fd6 = fd
	}
	if s.ct, err = conntrack.Dial(nil); err != nil {
		s.Close()
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	return s, nil
}

// Close closes the sockets.
func (s *RawSender) Close() error {
	for _, fd := range []int{s.fd4, s.fd6} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if s.ct != nil {
		return s.ct.Close()
	}
	return nil
}

// Send checks that the flow's conntrack entry still exists, then sends its keep-alive.
func (s *RawSender) Send(f Flow) error {
	q := conntrack.NewFlow(unix.IPPROTO_UDP, 0, f.Phone.Addr(), f.Remote.Addr(), f.Phone.Port(), f.Remote.Port(), 0, 0)
	if _, err := s.ct.Get(q); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return ErrFlowGone
		}
		return fmt.Errorf("conntrack get: %w", err)
	}
	pkt, err := Packet(f)
	if err != nil {
		return err
	}
	if f.Remote.Addr().Is4() {
		sa := &unix.SockaddrInet4{Addr: f.Remote.Addr().As4()}
		return sendto(s.fd4, pkt, sa)
	}
	if s.fd6 < 0 {
		return errors.New("no raw IPv6 socket")
	}
	return sendto(s.fd6, pkt, &unix.SockaddrInet6{Addr: f.Remote.Addr().As16()})
}

func sendto(fd int, pkt []byte, sa unix.Sockaddr) error {
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	return nil
}
