package resolver

import (
	"context"
	"net"
	"net/netip"
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
