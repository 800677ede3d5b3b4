package lab

import (
	"context"
	"net/netip"

	"github.com/voipgw/voipgw/media/stun"
)

// STUN ports of the lab's RFC 5780 server (primary, alternate).
var STUNPorts = [2]uint16{3478, 3479}

// StartSTUN runs an RFC 5780 STUN server in the internet namespace on
// addrs × STUNPorts (primary addrs[0]:3478); it stops with the lab.
func (l *Lab) StartSTUN(addrs [2]netip.Addr) error {
	s := &stun.Server{}
	for i, a := range addrs {
		for j, p := range STUNPorts {
			c, err := ListenUDP(l.Inet, netip.AddrPortFrom(a, p))
			if err != nil {
				for _, row := range s.Conns {
					for _, c := range row {
						if c != nil {
							c.Close()
						}
					}
				}
				return err
			}
			s.Conns[i][j] = c
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	l.closers = append(l.closers, func() error { cancel(); <-done; return nil })
	return nil
}
