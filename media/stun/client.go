package stun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Behaviour is a NAT's mapping or filtering behaviour (RFC 4787 / RFC 5780 terms).
type Behaviour int

const (
	Unknown                 Behaviour = iota
	EndpointIndependent               // EIM / EIF
	AddressDependent                  // ADM / ADF
	AddressAndPortDependent           // APDM / APDF
)

func (b Behaviour) String() string {
	switch b {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressAndPortDependent:
		return "address-and-port-dependent"
	}
	return "unknown"
}

// Short is the RFC 5780 abbreviation with its suffix: EIM, ADF, ...
func (b Behaviour) Short(suffix string) string {
	switch b {
	case EndpointIndependent:
		return "EI" + suffix
	case AddressDependent:
		return "AD" + suffix
	case AddressAndPortDependent:
		return "APD" + suffix
	}
	return "?" + suffix
}

// Result is what Discover found.
type Result struct {
	Local     netip.AddrPort // the client's own endpoint (of the mapping tests)
	Mapped    netip.AddrPort // XOR-MAPPED-ADDRESS of mapping test I
	Other     netip.AddrPort // the server's OTHER-ADDRESS
	NoNAT     bool           // Mapped == Local: no address translation on the path
	Mapping   Behaviour
	Filtering Behaviour
	Steps     []string // one line per test, for the report
}

// FullCone says whether the NAT is what the provider asks for: endpoint-independent
// mapping and filtering (without a NAT, only filtering counts).
func (r Result) FullCone() bool {
	return (r.NoNAT || r.Mapping == EndpointIndependent) && r.Filtering == EndpointIndependent
}

// Remedy is the provider's advice (seed) when the NAT is not a full cone.
const Remedy = "Gebruik Loose NAT / Full Cone NAT: the port mapping must stay the same towards every destination " +
	"and the provider's media must reach it; a symmetric (address/port-dependent) NAT gives one-way audio"

// Verdict is one line for people.
func (r Result) Verdict() string {
	if r.NoNAT {
		return fmt.Sprintf("no NAT (mapped address is the local one), filtering %s", r.Filtering.Short("F"))
	}
	name := "restricted"
	switch {
	case r.FullCone():
		name = "full cone"
	case r.Mapping != EndpointIndependent && r.Mapping != Unknown:
		name = "symmetric"
	case r.Filtering == AddressDependent:
		name = "address-restricted cone"
	case r.Filtering == AddressAndPortDependent:
		name = "port-restricted cone"
	}
	return fmt.Sprintf("%s + %s: %s NAT", r.Mapping.Short("M"), r.Filtering.Short("F"), name)
}

// Client runs the RFC 5780 behaviour discovery against one server.
type Client struct {
	Server netip.AddrPort // primary address and port
	// Local is the address to send from; invalid: the one the kernel routes to Server from.
	Local netip.Addr
	// RTO is the first retransmission timeout (doubled per try), Tries the number of
	// sends per test. Zero values: 250 ms, 4 tries (3.75 s until a test gives up).
	RTO   time.Duration
	Tries int
	// Listen opens the client's sockets; nil: net.ListenUDP.
	Listen func(local netip.AddrPort) (*net.UDPConn, error)
}

// ErrNoServer is returned when mapping test I gets no answer at all.
var ErrNoServer = errors.New("no answer from the STUN server")

// Discover runs filtering tests I–III on one fresh socket, then mapping tests
// I–III on another (RFC 5780 §4.3, §4.4). The filtering tests come first on their
// own socket because the mapping tests send to the alternate address, which would
// open a restricted NAT's filter for exactly the responses filtering test II
// looks for.
//
// Test I is one binding sent twice on the same socket: a NAT that learns its
// mapping from a flow's later packets (voipgw's full cone maps an endpoint from
// its first packet, other NATs may not) must have seen the flow before the
// filtering test asks the server to answer from elsewhere; the second answer also
// has to agree with the first.
func (c *Client) Discover(ctx context.Context) (Result, error) {
	var r Result
	local := c.Local
	if !local.IsValid() {
		d, err := net.Dial("udp", c.Server.String())
		if err != nil {
			return r, fmt.Errorf("route to %s: %w", c.Server, err)
		}
		local = d.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		d.Close()
	}
	listen := c.Listen
	if listen == nil {
		listen = func(l netip.AddrPort) (*net.UDPConn, error) { return net.ListenUDP("udp", net.UDPAddrFromAddrPort(l)) }
	}
	open := func() (*net.UDPConn, error) {
		conn, err := listen(netip.AddrPortFrom(local, 0))
		if err != nil {
			return nil, fmt.Errorf("open socket on %s: %w", local, err)
		}
		return conn, nil
	}

	// Filtering.
	fc, err := open()
	if err != nil {
		return r, err
	}
	defer fc.Close()
	t1, err := c.testI(ctx, fc)
	if err != nil {
		return r, err
	}
	r.Other = t1.other
	if !r.Other.IsValid() {
		return r, fmt.Errorf("the server at %s sent no OTHER-ADDRESS: not an RFC 5780 server (two addresses, two ports)", c.Server)
	}
	alt := r.Other
	t2, ok, err := c.transact(ctx, fc, c.Server, changeIP|changePort)
	if err != nil {
		return r, err
	}
	switch {
	case ok && t2.from == alt:
		r.Filtering = EndpointIndependent
		r.Steps = append(r.Steps, fmt.Sprintf("filtering II: answer from %s (other address and port) came through", t2.from))
	default:
		r.Steps = append(r.Steps, fmt.Sprintf("filtering II: no answer from %s (other address and port)", alt))
		t3, ok, err := c.transact(ctx, fc, c.Server, changePort)
		if err != nil {
			return r, err
		}
		if ok && t3.from == netip.AddrPortFrom(c.Server.Addr(), alt.Port()) {
			r.Filtering = AddressDependent
			r.Steps = append(r.Steps, fmt.Sprintf("filtering III: answer from %s (same address, other port) came through", t3.from))
		} else {
			r.Filtering = AddressAndPortDependent
			r.Steps = append(r.Steps, fmt.Sprintf("filtering III: no answer from %s (same address, other port)", netip.AddrPortFrom(c.Server.Addr(), alt.Port())))
		}
	}

	// Mapping.
	mc, err := open()
	if err != nil {
		return r, err
	}
	defer mc.Close()
	m1, err := c.testI(ctx, mc)
	if err != nil {
		return r, err
	}
	r.Local = udpAddrPort(mc)
	r.Mapped = m1.mapped
	r.Steps = append(r.Steps, fmt.Sprintf("mapping I: %s → %s is mapped to %s", r.Local, c.Server, r.Mapped))
	if r.Mapped == r.Local {
		r.NoNAT = true
		r.Mapping = EndpointIndependent
		return r, nil
	}
	dst2 := netip.AddrPortFrom(alt.Addr(), c.Server.Port())
	m2, ok, err := c.transact(ctx, mc, dst2, 0)
	if err != nil {
		return r, err
	}
	if !ok {
		r.Steps = append(r.Steps, fmt.Sprintf("mapping II: no answer from %s (is the server's other address allowlisted?)", dst2))
		return r, nil
	}
	r.Steps = append(r.Steps, fmt.Sprintf("mapping II: towards %s mapped to %s", dst2, m2.mapped))
	if m2.mapped == r.Mapped {
		r.Mapping = EndpointIndependent
		return r, nil
	}
	m3, ok, err := c.transact(ctx, mc, alt, 0)
	if err != nil {
		return r, err
	}
	if !ok {
		r.Steps = append(r.Steps, fmt.Sprintf("mapping III: no answer from %s", alt))
		return r, nil
	}
	r.Steps = append(r.Steps, fmt.Sprintf("mapping III: towards %s mapped to %s", alt, m3.mapped))
	if m3.mapped == m2.mapped {
		r.Mapping = AddressDependent
	} else {
		r.Mapping = AddressAndPortDependent
	}
	return r, nil
}

type answer struct {
	from, mapped, other netip.AddrPort
}

// testI is a binding to the primary address, twice; both must be answered alike.
func (c *Client) testI(ctx context.Context, conn *net.UDPConn) (answer, error) {
	var first answer
	for i := range 2 {
		a, ok, err := c.transact(ctx, conn, c.Server, 0)
		if err != nil {
			return a, err
		}
		if !ok {
			return a, fmt.Errorf("%w at %s", ErrNoServer, c.Server)
		}
		if i == 1 && a.mapped != first.mapped {
			return a, fmt.Errorf("the mapping changed between two bindings of one flow: %s then %s", first.mapped, a.mapped)
		}
		first = a
	}
	return first, nil
}

// transact sends one binding request (with CHANGE-REQUEST flags when change is not
// zero) and waits for its answer, retransmitting. ok is false when none came.
func (c *Client) transact(ctx context.Context, conn *net.UDPConn, dst netip.AddrPort, change uint32) (answer, bool, error) {
	tid, err := newTransactionID()
	if err != nil {
		return answer{}, false, fmt.Errorf("build request: %w", err)
	}
	var attrs []attribute
	if change != 0 {
		attrs = append(attrs, attribute{typ: attrChangeRequest, val: binary.BigEndian.AppendUint32(nil, change)})
	}
	req := build(typeBindingRequest, tid, attrs...)
	rto, tries := c.RTO, c.Tries
	if rto <= 0 {
		rto = 250 * time.Millisecond
	}
	if tries <= 0 {
		tries = 4
	}
	buf := make([]byte, 1500)
	for try := 0; try < tries; try++ {
		if err := ctx.Err(); err != nil {
			return answer{}, false, err
		}
		if _, err := conn.WriteToUDPAddrPort(req, dst); err != nil {
			return answer{}, false, fmt.Errorf("send to %s: %w", dst, err)
		}
		deadline := time.Now().Add(rto << try)
		conn.SetReadDeadline(deadline)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				// ICMP port unreachable from an earlier send; keep waiting this round.
				if time.Now().After(deadline) {
					break
				}
				continue
			}
			m, err := parse(buf[:n])
			if err != nil || m.tid != tid || m.typ != typeBindingSuccess {
				continue // a late answer of an earlier test, or noise
			}
			a := answer{from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())}
			if a.mapped, err = m.addrOf(attrXORMappedAddress); err != nil {
				return a, false, fmt.Errorf("answer from %s without XOR-MAPPED-ADDRESS: %w", a.from, err)
			}
			if oa, err := m.addrOf(attrOtherAddress); err == nil {
				a.other = oa
			}
			return a, true, nil
		}
	}
	return answer{}, false, nil
}

func toAddrPort(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

func udpAddrPort(c *net.UDPConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
