package sipfix

// The SIP probe: an echo UAS (`voipgw sip-echo`) that answers every request with a
// 200 OK whose body is the request exactly as it arrived, and a client (`voipgw
// diagnose --sip-echo`) that sends requests with known Via, Contact and SDP from
// the VoIP network side and compares, field by field, what the echo saw.
//
// The echoed request travels base64-encoded (Content-Type EchoContentType): a SIP
// ALG scans the whole message for Contact headers and SDP lines, also in the body
// of a response, and in the reply direction it maps the public address back to the
// phone's; a plain copy of the rewritten request would come back "repaired" and
// hide the very rewrite the probe looks for.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// EchoContentType marks the echo's body: the request as it arrived, base64.
const EchoContentType = "application/x-voipgw-sip-echo"

// EchoSourceHeader carries the source address the echo saw (the NAT's mapping).
const EchoSourceHeader = "X-Voipgw-Echo-Source"

// echoResponse builds the answer to one raw request; nil for ACK and for what is
// not a request.
func echoResponse(raw []byte, src netip.AddrPort) []byte {
	req, _, err := parseSIP(raw, false)
	if err != nil || req.status != 0 || req.method == "ACK" {
		return nil
	}
	return response(req, 200, "OK", []sipHeader{{"Content-Type", EchoContentType}, {EchoSourceHeader, src.String()}},
		[]byte(base64.StdEncoding.EncodeToString(raw)))
}

// Echo serves UDP and TCP on the same address until ctx ends.
type Echo struct {
	udp *net.UDPConn
	tcp *net.TCPListener
	log *slog.Logger
	wg  sync.WaitGroup
}

// ListenEcho opens the echo's sockets (in the caller's network namespace).
func ListenEcho(addr netip.AddrPort, log *slog.Logger) (*Echo, error) {
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("sip echo: %w", err)
	}
	t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("sip echo: %w", err)
	}
	return &Echo{udp: u, tcp: t, log: log}, nil
}

// Serve answers until ctx ends; the sockets are closed then.
func (e *Echo) Serve(ctx context.Context) error {
	e.wg.Add(2)
	go func() { defer e.wg.Done(); e.serveUDP() }()
	go func() { defer e.wg.Done(); e.serveTCP() }()
	<-ctx.Done()
	e.udp.Close()
	e.tcp.Close()
	e.wg.Wait()
	return nil
}

func (e *Echo) serveUDP() {
	buf := make([]byte, 65535)
	for {
		n, from, err := e.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		raw := append([]byte(nil), buf[:n]...)
		if res := echoResponse(raw, from); res != nil {
			e.udp.WriteToUDPAddrPort(res, from)
			e.log.Debug("sip echo: answered", "transport", "udp", "from", from)
		}
	}
}

func (e *Echo) serveTCP() {
	for {
		c, err := e.tcp.AcceptTCP()
		if err != nil {
			return
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer c.Close()
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			var pending []byte
			buf := make([]byte, 65535)
			for {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				pending = append(pending, buf[:n]...)
				for {
					// Frame by Content-Length; keep the bytes exactly as they came.
					_, total, err := parseSIP(pending, true)
					if err != nil {
						if len(pending) > 1<<16 {
							return
						}
						break // incomplete: read more
					}
					raw := pending[:total]
					pending = append([]byte(nil), pending[total:]...)
					if res := echoResponse(raw, from); res != nil {
						c.Write(res)
					}
				}
			}
		}()
	}
}

// Request is one probe request as sent and as the echo saw it.
type Request struct {
	Transport string `json:"transport"`
	Method    string `json:"method"`
	Local     string `json:"local"`       // the probe's own address (in Via, Contact, SDP)
	EchoSaw   string `json:"echo_source"` // the source address the echo saw
	Status    int    `json:"status"`
	Diffs     []Diff `json:"diffs"`
	Sent      []byte `json:"-"`
	Seen      []byte `json:"-"`
}

func newTag() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// buildRequest writes a request by hand, so every byte is known: Via, Contact and
// the SDP's o=/c= carry the probe's own address, as a phone's do.
func buildRequest(method, transport string, local, server netip.AddrPort, cseq int, callID string) []byte {
	host := server.Addr().String()
	if server.Addr().Is6() {
		host = "[" + host + "]"
	}
	la := local.Addr().String()
	ip, lhost := "IP4", la
	if local.Addr().Is6() {
		ip, lhost = "IP6", "["+la+"]"
	}
	uri := fmt.Sprintf("sip:%s:%d", host, server.Port())
	if method == "REGISTER" {
		uri = "sip:" + host
	}
	sdp := fmt.Sprintf("v=0\r\no=voipgw 4242 4242 IN %s %s\r\ns=voipgw probe\r\nc=IN %s %s\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
		ip, la, ip, la)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", method, uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport\r\n", strings.ToUpper(transport), lhost, local.Port(), newTag())
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:probe@%s>;tag=%s\r\n", host, newTag())
	fmt.Fprintf(&b, "To: <sip:probe@%s>\r\n", host)
	fmt.Fprintf(&b, "Call-ID: %s@%s\r\n", callID, lhost)
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", cseq, method)
	fmt.Fprintf(&b, "Contact: <sip:probe@%s:%d;transport=%s>\r\n", lhost, local.Port(), transport)
	if method == "REGISTER" {
		fmt.Fprintf(&b, "Expires: 60\r\n")
	}
	fmt.Fprintf(&b, "User-Agent: voipgw-sip-probe\r\n")
	fmt.Fprintf(&b, "Content-Type: application/sdp\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(sdp), sdp)
	return b.Bytes()
}

func buildAck(invite []byte, transport string, local netip.AddrPort, toTag string) []byte {
	s := string(invite)
	s = strings.Replace(s, "INVITE ", "ACK ", 1)
	s = strings.Replace(s, " INVITE\r\n", " ACK\r\n", 1)
	if i := strings.Index(s, "To: "); i >= 0 && toTag != "" {
		j := strings.Index(s[i:], "\r\n")
		s = s[:i+j] + ";tag=" + toTag + s[i+j:]
	}
	if i := strings.Index(s, "Content-Type:"); i >= 0 {
		s = s[:i] + "Content-Length: 0\r\n\r\n"
	}
	return []byte(s)
}

// ProbeMethods are the requests the probe sends on each transport: OPTIONS and
// REGISTER as a phone does; INVITE because Linux's nf_nat_sip rewrites SDP only in
// INVITE, UPDATE, ACK and PRACK and their answers.
var ProbeMethods = []string{"OPTIONS", "REGISTER", "INVITE"}

// Probe sends the probe requests to an echo over transport ("udp" or "tcp") from
// one local socket and compares what the echo saw.
func Probe(ctx context.Context, server netip.AddrPort, transport string, timeout time.Duration) ([]Request, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, transport, server.String())
	if err != nil {
		return nil, fmt.Errorf("connect to the echo %s over %s: %w", server, transport, err)
	}
	defer conn.Close()
	local, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return nil, err
	}
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	callID := newTag()
	var out []Request
	var stream []byte
	readResponse := func() (*sipMsg, error) {
		buf := make([]byte, 65535)
		for {
			if transport == "tcp" && len(stream) > 0 {
				if msg, total, err := parseSIP(stream, true); err == nil {
					stream = append([]byte(nil), stream[total:]...)
					if msg.status != 0 {
						return msg, nil
					}
					continue
				}
			}
			conn.SetReadDeadline(time.Now().Add(timeout))
			n, err := conn.Read(buf)
			if err != nil {
				return nil, err
			}
			if transport == "udp" {
				msg, _, err := parseSIP(buf[:n], false)
				if err != nil {
					return nil, fmt.Errorf("unparsable answer: %w", err)
				}
				if msg.status != 0 {
					return msg, nil
				}
				continue
			}
			stream = append(stream, buf[:n]...)
		}
	}
	for i, method := range ProbeMethods {
		req := buildRequest(method, transport, local, server, i+1, callID+fmt.Sprint(i))
		r := Request{Transport: transport, Method: method, Local: local.String(), Sent: req}
		if _, err := conn.Write(req); err != nil {
			return out, fmt.Errorf("%s over %s: send: %w", method, transport, err)
		}
		res, err := readResponse()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) {
				return out, fmt.Errorf("%s over %s: no answer from the echo within %s", method, transport, timeout)
			}
			return out, fmt.Errorf("%s over %s: %w", method, transport, err)
		}
		r.Status = res.status
		if v, ok := res.get(EchoSourceHeader); ok {
			r.EchoSaw = v
		}
		if ct, ok := res.get("Content-Type"); !ok || ct != EchoContentType {
			return out, fmt.Errorf("%s over %s: the answer is not from a voipgw sip-echo (status %d)", method, transport, res.status)
		}
		seen, err := base64.StdEncoding.DecodeString(string(res.body))
		if err != nil {
			return out, fmt.Errorf("%s over %s: echo body: %w", method, transport, err)
		}
		r.Seen = seen
		if r.Diffs, err = Compare(req, seen); err != nil {
			return out, fmt.Errorf("%s over %s: %w", method, transport, err)
		}
		out = append(out, r)
		if method == "INVITE" {
			tag := ""
			if to, ok := res.get("To"); ok {
				tag, _ = param(to, "tag")
			}
			conn.Write(buildAck(req, transport, local, tag))
		}
	}
	return out, nil
}

// ListenEchoTCPOnly opens only the TCP listener (tests that pick the UDP port first).
func ListenEchoTCPOnly(addr netip.AddrPort) (*net.TCPListener, error) {
	return net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
}
