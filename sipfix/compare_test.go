package sipfix

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A REGISTER as a Yealink phone at 192.168.20.10 sends it, and as it leaves a
// router whose SIP ALG (Linux nf_nat_sip behind masquerade to 198.51.100.2) mapped
// Via, Contact and the SDP to the public address; the ALG also fixed Content-Length.
var phoneRegister = withBody("REGISTER sip:sbc.icvoip.net SIP/2.0\r\n"+
	"Via: SIP/2.0/UDP 192.168.20.10:5060;branch=z9hG4bK1466893337;rport\r\n"+
	"From: \"201\" <sip:201@sbc.icvoip.net:5060>;tag=1583539126\r\n"+
	"To: \"201\" <sip:201@sbc.icvoip.net:5060>\r\n"+
	"Call-ID: 1853416519@192.168.20.10\r\n"+
	"CSeq: 1 REGISTER\r\n"+
	"Contact: <sip:201@192.168.20.10:5060>\r\n"+
	"Max-Forwards: 70\r\n"+
	"User-Agent: Yealink SIP-T46U 108.86.0.45\r\n"+
	"Expires: 3600\r\n"+
	"Content-Type: application/sdp\r\n",
	"v=0\r\no=- 1 1 IN IP4 192.168.20.10\r\nc=IN IP4 192.168.20.10\r\nm=audio 11780 RTP/AVP 0\r\n")

// withBody appends Content-Length and the body.
func withBody(head, body string) string {
	return head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
}

func rewrite(s string, pairs ...string) string { return strings.NewReplacer(pairs...).Replace(s) }

func TestCompare(t *testing.T) {
	alg := rewrite(phoneRegister,
		"Via: SIP/2.0/UDP 192.168.20.10:5060", "Via: SIP/2.0/UDP 198.51.100.2:5060",
		"Contact: <sip:201@192.168.20.10:5060>", "Contact: <sip:201@198.51.100.2:5060>",
		"IN IP4 192.168.20.10\r\nc=IN IP4 192.168.20.10", "IN IP4 198.51.100.2\r\nc=IN IP4 198.51.100.2",
		"m=audio 11780", "m=audio 1024")
	// The ALG fixes Content-Length after its rewrite (the body got 4 bytes shorter).
	alg = strings.Replace(alg, fmt.Sprintf("Content-Length: %d", len(phoneRegister)-strings.Index(phoneRegister, "\r\n\r\n")-4),
		fmt.Sprintf("Content-Length: %d", len(alg)-strings.Index(alg, "\r\n\r\n")-4), 1)
	for _, tc := range []struct {
		name, seen string
		want       []string // fields
	}{
		{"unchanged", phoneRegister, nil},
		{"nf_nat_sip style", alg, []string{"Via sent-by", "Contact", "Content-Length", "SDP o=", "SDP c=", "SDP m="}},
		{"only Via received added", rewrite(phoneRegister, ";rport\r\n", ";rport;received=198.51.100.2\r\n"), []string{"Via parameters"}},
		{"header case changed", rewrite(phoneRegister, "User-Agent:", "user-agent:"), []string{"other bytes"}},
	} {
		diffs, err := Compare([]byte(phoneRegister), []byte(tc.seen))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, d := range diffs {
			got = append(got, d.Field)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: diffs %v, want fields %v", tc.name, diffs, tc.want)
		}
		v := Verdict(diffs)
		if (len(tc.want) == 0) != strings.HasPrefix(v, "no SIP ALG") {
			t.Errorf("%s: verdict %q", tc.name, v)
		}
	}
	if d, _ := Compare([]byte(phoneRegister), []byte(alg)); !strings.Contains(Verdict(d), "SIP ALG rewrote Via sent-by, Contact") ||
		d[0].Sent != "192.168.20.10:5060" || d[0].Seen != "198.51.100.2:5060" {
		t.Errorf("verdict/diff of the ALG case: %q %v", Verdict(d), d)
	}
	if _, err := Compare([]byte("garbage"), []byte(phoneRegister)); err == nil {
		t.Errorf("garbage parsed")
	}
}

// The echo and the probe against each other on the loopback: without a middlebox
// every field arrives as sent, over UDP and TCP, and the echo reports the source.
func TestProbeAgainstEchoLoopback(t *testing.T) {
	addr := netip.MustParseAddrPort("127.0.0.1:0")
	e, err := ListenEcho(addr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	port := e.udp.LocalAddr().(interface{ String() string }).String()
	// Same port for UDP and TCP is not guaranteed with :0; use the UDP one and re-listen TCP on it.
	e.tcp.Close()
	ap := netip.MustParseAddrPort(port)
	e2, err := ListenEchoTCPOnly(ap)
	if err != nil {
		t.Skipf("cannot bind tcp %s: %v", ap, err)
	}
	e.tcp = e2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, tr := range []string{"udp", "tcp"} {
		reqs, err := Probe(context.Background(), ap, tr, 3*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		if len(reqs) != len(ProbeMethods) {
			t.Fatalf("%s: %d answers", tr, len(reqs))
		}
		for _, r := range reqs {
			if r.Status != 200 || len(r.Diffs) != 0 || string(r.Sent) != string(r.Seen) || r.EchoSaw != r.Local {
				t.Errorf("%s %s: status %d, diffs %v, echo saw %s, local %s", tr, r.Method, r.Status, r.Diffs, r.EchoSaw, r.Local)
			}
		}
	}
}
