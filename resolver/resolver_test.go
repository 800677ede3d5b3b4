package resolver

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer serves a small zone on loopback: a CNAME chain, a plain name with
// A and AAAA records, and NXDOMAIN for everything else.
func startServer(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		rr := func(s string) dns.RR {
			x, err := dns.NewRR(s)
			if err != nil {
				t.Error(err)
			}
			return x
		}
		switch q.Name {
		case "sbc.example.":
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, rr("sbc.example. 300 IN CNAME edge.cdn.example."),
					rr("edge.cdn.example. 60 IN CNAME node7.cdn.example."),
					rr("node7.cdn.example. 120 IN A 203.0.113.7"),
					rr("other.example. 10 IN A 203.0.113.66")) // not on the chain: ignored
			}
		case "dual.example.":
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, rr("dual.example. 30 IN A 203.0.113.8"), rr("dual.example. 30 IN A 203.0.113.9"))
			} else {
				m.Answer = append(m.Answer, rr("dual.example. 40 IN AAAA 2001:db8::8"))
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func TestLookup(t *testing.T) {
	up := startServer(t)
	r := &Resolver{Upstreams: []netip.AddrPort{up}, Timeout: time.Second}
	tests := []struct {
		name    string
		want    []string
		ttl     time.Duration
		wantErr bool
	}{
		{"sbc.example", []string{"203.0.113.7"}, 60 * time.Second, false},
		{"dual.example", []string{"203.0.113.8", "203.0.113.9", "2001:db8::8"}, 30 * time.Second, false},
		{"missing.example", nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := r.Lookup(context.Background(), tt.name)
			var got []string
			for _, a := range res.Addrs {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("addrs = %v, want %v", got, tt.want)
			}
			if (res.Err != nil) != tt.wantErr {
				t.Errorf("err = %v, wantErr %v", res.Err, tt.wantErr)
			}
			if res.TTL != tt.ttl {
				t.Errorf("ttl = %v, want %v", res.TTL, tt.ttl)
			}
		})
	}
	all := r.LookupAll(context.Background(), []string{"sbc.example", "dual.example", "missing.example"}, nil)
	if len(all) != 3 || all["missing.example"].Err == nil || len(all["dual.example"].Addrs) != 3 {
		t.Errorf("LookupAll = %+v", all)
	}
}

func TestNoUpstreamIsAnError(t *testing.T) {
	res := (&Resolver{}).Lookup(context.Background(), "sbc.example")
	if res.Err == nil {
		t.Fatal("lookup without upstream succeeded")
	}
}

func TestSystemUpstreams(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	conf := "# generated\nsearch lan\nnameserver 192.0.2.53\nnameserver  2001:db8::53 # v6\noptions ndots:2\nnameserver resolver.example\nnameserver fe80::1%eth0\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := SystemUpstreams(path)
	if err != nil {
		t.Fatal(err)
	}
	// What miekg/dns's resolv.conf reader (used before) made of it, kept to addresses.
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.AddrPort
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			want = append(want, netip.AddrPortFrom(a, 53))
		}
	}
	if !slices.Equal(got, want) || len(got) != 3 {
		t.Errorf("upstreams %v, miekg's reader %v", got, want)
	}
	os.WriteFile(path, []byte("search lan\n"), 0o644)
	if _, err := SystemUpstreams(path); err == nil {
		t.Error("a resolv.conf without name servers gave no error")
	}
	if _, err := SystemUpstreams(path + ".missing"); err == nil {
		t.Error("a missing resolv.conf gave no error")
	}
}

// A truncated UDP answer is asked again over TCP; replies with another ID or
// question are not taken for the answer.
func TestTruncatedAndSpoofed(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	answer := func(r *dns.Msg, n int) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(r)
		for i := 1; i <= n; i++ {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 50},
				A: net.IPv4(198, 51, 100, byte(i))})
		}
		return m
	}
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Qtype != dns.TypeA {
			w.WriteMsg(answer(r, 0))
			return
		}
		spoof := answer(r, 1)
		spoof.Id++
		spoof.Answer[0].(*dns.A).A = net.IPv4(203, 0, 113, 66)
		w.WriteMsg(spoof)
		other := answer(r, 1)
		other.Question[0].Name = "evil.example."
		other.Answer[0].(*dns.A).A = net.IPv4(203, 0, 113, 66)
		w.WriteMsg(other)
		m := answer(r, 1)
		m.Truncated = true
		w.WriteMsg(m)
	})}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { w.WriteMsg(answer(r, 3)) })}
	for _, s := range []*dns.Server{udp, tcp} {
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
	time.Sleep(50 * time.Millisecond)
	r := &Resolver{Upstreams: []netip.AddrPort{netip.MustParseAddrPort(pc.LocalAddr().String())}, Timeout: time.Second}
	res := r.Lookup(context.Background(), "big.example")
	var got []string
	for _, a := range res.Addrs {
		got = append(got, a.String())
	}
	if res.Err != nil || !slices.Equal(got, []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"}) || res.TTL != 50*time.Second {
		t.Errorf("Lookup = %v %v %v, want the three addresses of the TCP answer", got, res.TTL, res.Err)
	}
}
