package dnsmsg

// DNS over TCP (RFC 1035 §4.2.2, RFC 7766): each message after its 16-bit length.
// The forwarder's server and its upstream queries, and the resolver, frame
// messages the same way.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// AppendTCP appends msg with its length prefix to dst.
func AppendTCP(dst, msg []byte) ([]byte, error) {
	if len(msg) > MaxMsgSize {
		return dst, errors.New("message too large for TCP")
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...), nil
}

// ReadTCP reads one length-prefixed message (at least a header long).
func ReadTCP(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < HeaderLen {
		return nil, fmt.Errorf("message of %d bytes: %w", n, ErrFormat)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// AskTCP sends q to up over a new TCP connection and returns the one message that
// comes back (not checked against q: the caller knows what it asked), all before
// deadline.
func AskTCP(ctx context.Context, up netip.AddrPort, q []byte, deadline time.Time) ([]byte, error) {
	out, err := AppendTCP(nil, q)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, "tcp", up.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write(out); err != nil {
		return nil, err
	}
	return ReadTCP(c)
}
