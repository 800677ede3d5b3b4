package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/voipgw/voipgw/sipfix"
)

// SIPEcho is the lab's SIP echo (sbc-trunk.icvoip.net): a voipgw sip-echo on
// udp/tcp 5060, so a SIP ALG on the gateway sees SIP on its usual port.
var SIPEcho = netip.MustParseAddr("203.0.113.12")

func init() { DNSNames["sbc-trunk.icvoip.net"] = []netip.Addr{SIPEcho} }

// StartSIPEcho adds SIPEcho to the internet side and runs the echo there until the
// lab closes.
func (l *Lab) StartSIPEcho() error {
	var e *sipfix.Echo
	err := l.Inet.Do(func() error {
		if err := addAddr("lo", netip.PrefixFrom(SIPEcho, 32)); err != nil {
			return err
		}
		var err error
		e, err = sipfix.ListenEcho(netip.AddrPortFrom(SIPEcho, 5060), slog.New(slog.NewTextHandler(io.Discard, nil)))
		return err
	})
	if err != nil {
		return fmt.Errorf("lab sip echo: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Serve(ctx); close(done) }()
	l.closers = append(l.closers, func() error { cancel(); <-done; return nil })
	return nil
}
