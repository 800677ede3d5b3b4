package sipfix

// The SIP messages the ALG probe and its echo exchange, parsed and built here:
// a start line, headers in order, a body framed by Content-Length. The probe
// only needs the fields an ALG rewrites and the echo only a 200 with the request's
// Via, From, To, Call-ID and CSeq; emiago/sipgo did that with a full stack whose
// TLS and WebSocket transports linked net/http and crypto (0.64 MB of the mipsle
// binary; BENCHMARKS.md).

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// sipMsg is a parsed SIP request or response.
type sipMsg struct {
	method, uri string // requests
	status      int    // responses (0 for a request)
	headers     []sipHeader
	body        []byte
}

type sipHeader struct{ name, value string }

// compactNames maps the compact header forms (RFC 3261 §7.3.3) to the full names.
var compactNames = map[string]string{"v": "Via", "f": "From", "t": "To", "m": "Contact", "i": "Call-ID",
	"l": "Content-Length", "c": "Content-Type", "e": "Content-Encoding", "k": "Supported", "s": "Subject"}

var errIncomplete = errors.New("sip: incomplete message")

// parseSIP parses the message at the start of b and returns its length. On a
// stream (TCP) the body is framed by Content-Length, which must be there, and a
// message not all in b yet is errIncomplete; a datagram's body is the rest of it.
func parseSIP(b []byte, stream bool) (*sipMsg, int, error) {
	end := strings.Index(string(b), "\r\n\r\n")
	sep := 4
	if end < 0 {
		if end = strings.Index(string(b), "\n\n"); end < 0 {
			if stream {
				return nil, 0, errIncomplete
			}
			return nil, 0, errors.New("sip: no end of headers")
		}
		sep = 2
	}
	lines := strings.Split(strings.ReplaceAll(string(b[:end]), "\r\n", "\n"), "\n")
	m := &sipMsg{}
	start := strings.Fields(lines[0])
	switch {
	case len(start) >= 2 && start[0] == "SIP/2.0":
		code, err := strconv.Atoi(start[1])
		if err != nil || code < 100 || code > 699 {
			return nil, 0, fmt.Errorf("sip: bad status line %q", lines[0])
		}
		m.status = code
	case len(start) == 3 && start[2] == "SIP/2.0":
		m.method, m.uri = start[0], start[1]
	default:
		return nil, 0, fmt.Errorf("sip: bad start line %q", lines[0])
	}
	for _, l := range lines[1:] {
		if l != "" && (l[0] == ' ' || l[0] == '\t') && len(m.headers) > 0 { // folded
			m.headers[len(m.headers)-1].value += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return nil, 0, fmt.Errorf("sip: bad header line %q", l)
		}
		name = strings.TrimSpace(name)
		if full, ok := compactNames[strings.ToLower(name)]; ok {
			name = full
		}
		m.headers = append(m.headers, sipHeader{name, strings.TrimSpace(value)})
	}
	bodyAt := end + sep
	n := len(b)
	if cl, ok := m.get("Content-Length"); ok {
		l, err := strconv.Atoi(cl)
		if err != nil || l < 0 {
			return nil, 0, fmt.Errorf("sip: bad Content-Length %q", cl)
		}
		if bodyAt+l > len(b) {
			if stream {
				return nil, 0, errIncomplete
			}
			return nil, 0, errors.New("sip: body shorter than Content-Length")
		}
		n = bodyAt + l
	} else if stream {
		return nil, 0, errors.New("sip: no Content-Length on a stream")
	}
	m.body = b[bodyAt:n]
	return m, n, nil
}

// get returns the first value of a header (names compared without case).
func (m *sipMsg) get(name string) (string, bool) {
	for _, h := range m.headers {
		if strings.EqualFold(h.name, name) {
			return h.value, true
		}
	}
	return "", false
}

// all returns every value of a header, in order.
func (m *sipMsg) all(name string) []string {
	var out []string
	for _, h := range m.headers {
		if strings.EqualFold(h.name, name) {
			out = append(out, h.value)
		}
	}
	return out
}

// topVia splits the topmost Via into its sent-by and its parameters.
func (m *sipMsg) topVia() (sentBy, params string, ok bool) {
	v, ok := m.get("Via")
	if !ok {
		return "", "", false
	}
	v, _, _ = strings.Cut(v, ",") // several values in one header: the first is the topmost
	f := strings.Fields(v)        // "SIP/2.0/UDP", "host:port;params"
	if len(f) < 2 {
		return "", "", false
	}
	rest := strings.Join(f[1:], "")
	sentBy, params, _ = strings.Cut(rest, ";")
	return sentBy, params, true
}

// address is a name-addr's or addr-spec's URI: what is in <…>, else up to the parameters.
func address(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	a, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(a)
}

// param returns a header parameter after the address (";tag=…").
func param(v, name string) (string, bool) {
	if i := strings.IndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	} else if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[i:]
	}
	for _, p := range strings.Split(v, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, name) {
			return val, true
		}
	}
	return "", false
}

// response builds the response to req (RFC 3261 §8.2.6: the request's Via, From,
// To with a tag, Call-ID and CSeq; Record-Route for a 2xx to a dialog-creating
// request) with the extra headers and body.
func response(req *sipMsg, status int, reason string, extra []sipHeader, body []byte) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", status, reason)
	if req.method != "REGISTER" && status/100 == 2 {
		for _, v := range req.all("Record-Route") {
			fmt.Fprintf(&b, "Record-Route: %s\r\n", v)
		}
	}
	for _, v := range req.all("Via") {
		fmt.Fprintf(&b, "Via: %s\r\n", v)
	}
	if v, ok := req.get("From"); ok {
		fmt.Fprintf(&b, "From: %s\r\n", v)
	}
	if v, ok := req.get("To"); ok {
		if _, tagged := param(v, "tag"); !tagged {
			t := make([]byte, 8)
			rand.Read(t)
			v += ";tag=" + hex.EncodeToString(t)
		}
		fmt.Fprintf(&b, "To: %s\r\n", v)
	}
	for _, name := range []string{"Call-ID", "CSeq"} {
		if v, ok := req.get(name); ok {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	for _, h := range extra {
		fmt.Fprintf(&b, "%s: %s\r\n", h.name, h.value)
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	return []byte(b.String())
}
