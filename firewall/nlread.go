package firewall

// A minimal reader of nf_tables netlink dumps. Apply diffs the kernel's table
// against the desired one; google/nftables can read tables back too, but it
// decodes every rule's expressions (and fails on some it does not know), drops the
// set user data the diff compares (comments, byte order), and collects a whole
// dump in memory before returning it: 100 000 set elements are tens of megabytes of
// decoded structs. This reader walks each dump message by message in one reused
// buffer and hands out only the raw attributes the caller asks for.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// nlDumper is one NETLINK_NETFILTER socket for dump requests.
type nlDumper struct {
	fd  int
	seq uint32
	buf []byte
}

func openDumper() (*nlDumper, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// A dump message is at most one page-sized skb chain the kernel fills up to the
	// reader's buffer; 64 KiB holds any of them and is reused for the whole dump.
	return &nlDumper{fd: fd, buf: make([]byte, 64<<10)}, nil
}

// errDumpInterrupted: the table changed while it was being dumped (the kernel
// flags the answer NLM_F_DUMP_INTR); what was read may be inconsistent.
var errDumpInterrupted = errors.New("netlink dump interrupted by a concurrent change")

func (d *nlDumper) close() error { return unix.Close(d.fd) }

// nlAttr appends one netlink attribute (host-endian header, 4-byte aligned).
func nlAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func nlString(s string) []byte { return append([]byte(s), 0) }

// dump sends an nf_tables GET request with NLM_F_DUMP for family and calls fn with
// the attributes of every message of the answer (after the nfgenmsg header). The
// slices passed to fn are only valid during the call.
func (d *nlDumper) dump(msg uint16, family byte, attrs []byte, fn func(attrs []byte) error) error {
	return d.request(msg, family, unix.NLM_F_DUMP, attrs, fn)
}

// request is dump with other flags: NLM_F_ACK for a get that answers one message
// and an ack.
func (d *nlDumper) request(msg uint16, family byte, flags uint16, attrs []byte, fn func(attrs []byte) error) error {
	d.seq++
	req := make([]byte, 0, 20+len(attrs))
	req = binary.NativeEndian.AppendUint32(req, uint32(20+len(attrs)))
	req = binary.NativeEndian.AppendUint16(req, unix.NFNL_SUBSYS_NFTABLES<<8|msg)
	req = binary.NativeEndian.AppendUint16(req, unix.NLM_F_REQUEST|flags)
	req = binary.NativeEndian.AppendUint32(req, d.seq)
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = append(req, family, unix.NFNETLINK_V0, 0, 0)
	req = append(req, attrs...)
	if err := unix.Sendto(d.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	var cbErr error // a callback error ends the walk but the dump is still drained
	intr := false
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("netlink receive: %w", err)
		}
		b := d.buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			typ := binary.NativeEndian.Uint16(b[4:6])
			intr = intr || binary.NativeEndian.Uint16(b[6:8])&unix.NLM_F_DUMP_INTR != 0
			seq := binary.NativeEndian.Uint32(b[8:12])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return errors.New("netlink: truncated message")
			}
			body := b[unix.NLMSG_HDRLEN:l]
			b = b[min(len(b), (l+3)&^3):]
			if seq != d.seq {
				continue // a late answer to an earlier request
			}
			switch typ {
			case unix.NLMSG_DONE:
				if intr && cbErr == nil {
					return errDumpInterrupted
				}
				return cbErr
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
						return unix.Errno(-e)
					}
				}
				return cbErr
			}
			if cbErr == nil && len(body) >= 4 {
				cbErr = fn(body[4:])
			}
		}
	}
}

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an attribute type.
const nlaTypeMask = 0x3fff

// eachAttr calls fn for every attribute in b (the type without the nested and
// byte-order flags).
func eachAttr(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & nlaTypeMask
		if l < 4 || l > len(b) {
			return
		}
		fn(typ, b[4:l])
		b = b[min(len(b), (l+3)&^3):]
	}
}

// attrOf returns the first attribute of type typ in b.
func attrOf(b []byte, typ uint16) []byte {
	var out []byte
	found := false
	eachAttr(b, func(t uint16, data []byte) {
		if t == typ && !found {
			out, found = data, true
		}
	})
	return out
}

// cString reads a NUL-terminated netlink string attribute.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
