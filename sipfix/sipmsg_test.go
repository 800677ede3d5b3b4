package sipfix

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestParseSIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		stream  bool
		err     error // errIncomplete, or any error (errAny)
		n       int   // message length; 0: all of in
		check   func(*testing.T, *sipMsg)
		wantErr bool
	}{
		{name: "compact and folded headers", in: "OPTIONS sip:x@example.net SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.10:5060\r\n ;branch=z9hG4bK1\r\nl: 0\r\nm: <sip:a@192.0.2.10>\r\n\r\n",
			check: func(t *testing.T, m *sipMsg) {
				if sb, p, _ := m.topVia(); sb != "192.0.2.10:5060" || p != "branch=z9hG4bK1" {
					t.Errorf("Via %q %q", sb, p)
				}
				if c, _ := m.get("contact"); address(c) != "sip:a@192.0.2.10" {
					t.Errorf("Contact %q", c)
				}
			}},
		{name: "stream: two messages, the first framed", in: "SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabcSIP/2.0 200 OK\r\n", stream: true, n: 40,
			check: func(t *testing.T, m *sipMsg) {
				if m.status != 200 || string(m.body) != "abc" {
					t.Errorf("status %d body %q", m.status, m.body)
				}
			}},
		{name: "stream: body not all there", in: "SIP/2.0 200 OK\r\nContent-Length: 9\r\n\r\nabc", stream: true, err: errIncomplete},
		{name: "stream: head not all there", in: "SIP/2.0 200 OK\r\nContent-Le", stream: true, err: errIncomplete},
		{name: "stream: no Content-Length", in: "SIP/2.0 200 OK\r\n\r\n", stream: true, wantErr: true},
		{name: "datagram: body is the rest", in: "MESSAGE sip:x SIP/2.0\r\n\r\nhello", check: func(t *testing.T, m *sipMsg) {
			if m.method != "MESSAGE" || string(m.body) != "hello" {
				t.Errorf("%q %q", m.method, m.body)
			}
		}},
		{name: "not SIP", in: "GET / HTTP/1.1\r\n\r\n", wantErr: true},
		{name: "header without colon", in: "OPTIONS sip:x SIP/2.0\r\nbroken\r\n\r\n", wantErr: true},
		{name: "Content-Length beyond the datagram", in: "OPTIONS sip:x SIP/2.0\r\nContent-Length: 5\r\n\r\nab", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, n, err := parseSIP([]byte(tc.in), tc.stream)
			switch {
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			case tc.wantErr:
				if err == nil || errors.Is(err, errIncomplete) {
					t.Fatalf("err %v, want a parse error", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			want := tc.n
			if want == 0 {
				want = len(tc.in)
			}
			if n != want {
				t.Errorf("length %d, want %d", n, want)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

// The echo's answer, read by sipgo as an independent parser: a 200 with the
// request's Via, From, Call-ID and CSeq, To with a tag, and the echo's headers.
func TestEchoResponseReadBySipgo(t *testing.T) {
	req := buildRequest("INVITE", "udp", netip.MustParseAddrPort("192.0.2.10:5062"), netip.MustParseAddrPort("203.0.113.10:5060"), 1, "abc")
	raw := echoResponse(req, netip.MustParseAddrPort("198.51.100.2:40000"))
	msg, err := sip.ParseMessage(raw)
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	res, ok := msg.(*sip.Response)
	if !ok || res.StatusCode != 200 {
		t.Fatalf("not a 200:\n%s", raw)
	}
	in, _ := sip.ParseMessage(req)
	r := in.(*sip.Request)
	if res.Via().SentBy() != r.Via().SentBy() || res.CallID().Value() != r.CallID().Value() || res.CSeq().Value() != r.CSeq().Value() ||
		res.From().Address.String() != r.From().Address.String() {
		t.Errorf("headers not copied:\n%s", raw)
	}
	if tag, ok := res.To().Params.Get("tag"); !ok || tag == "" {
		t.Errorf("To without a tag:\n%s", raw)
	}
	if h := res.GetHeader(EchoSourceHeader); h == nil || h.Value() != "198.51.100.2:40000" {
		t.Errorf("echo source: %v", h)
	}
	if !strings.HasPrefix(string(raw), "SIP/2.0 200 OK\r\n") {
		t.Errorf("status line:\n%s", raw)
	}
	if echoResponse([]byte(strings.Replace(string(req), "INVITE", "ACK", 1)), netip.AddrPort{}) != nil {
		t.Error("an ACK was answered")
	}
}
