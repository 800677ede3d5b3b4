package stun

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	pstun "github.com/pion/stun/v2"
)

func loopbackServer(t *testing.T) (*Server, [2]netip.Addr, [2]uint16) {
	t.Helper()
	addrs := [2]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	// Port 0 would give four different ports; RFC 5780 needs two, shared by both addresses.
	for base := uint16(34780); base < 34980; base += 2 {
		s, err := Listen(addrs, [2]uint16{base, base + 1})
		if err == nil {
			return s, addrs, [2]uint16{base, base + 1}
		}
	}
	t.Skip("no free pair of loopback ports")
	return nil, addrs, [2]uint16{}
}

func TestAnswerHonoursChangeRequest(t *testing.T) {
	s, addrs, ports := loopbackServer(t)
	defer s.close()
	from := netip.MustParseAddrPort("192.0.2.10:5062")
	for _, tc := range []struct {
		name         string
		i, j         int
		change       uint32 // 0: no CHANGE-REQUEST attribute
		wantI, wantJ int
	}{
		{"primary, no change", 0, 0, 0, 0, 0},
		{"primary, change ip and port", 0, 0, changeIP | changePort, 1, 1},
		{"primary, change port", 0, 0, changePort, 0, 1},
		{"primary, change ip", 0, 0, changeIP, 1, 0},
		{"alternate, change ip", 1, 1, changeIP, 0, 1},
		{"flags zero", 0, 1, 0x100, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setters := []pstun.Setter{pstun.TransactionID, pstun.BindingRequest}
			if tc.change != 0 {
				v := make([]byte, 4)
				binary.BigEndian.PutUint32(v, tc.change)
				setters = append(setters, pstun.RawAttribute{Type: pstun.AttrChangeRequest, Length: 4, Value: v})
			}
			req := pstun.MustBuild(setters...)
			raw, ri, rj, err := s.answer(req.Raw, from, tc.i, tc.j)
			if err != nil {
				t.Fatal(err)
			}
			if ri != tc.wantI || rj != tc.wantJ {
				t.Fatalf("answered from socket (%d,%d), want (%d,%d)", ri, rj, tc.wantI, tc.wantJ)
			}
			m := &pstun.Message{Raw: raw}
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			if m.TransactionID != req.TransactionID || m.Type != pstun.BindingSuccess {
				t.Fatalf("response %s with another transaction", m.Type)
			}
			var xa pstun.XORMappedAddress
			var ro pstun.ResponseOrigin
			var oa pstun.OtherAddress
			for _, g := range []pstun.Getter{&xa, &ro, &oa} {
				if err := g.GetFrom(m); err != nil {
					t.Fatalf("%T: %v", g, err)
				}
			}
			if got := toAddrPort(xa.IP, xa.Port); got != from {
				t.Errorf("XOR-MAPPED-ADDRESS %s, want %s", got, from)
			}
			if got, want := toAddrPort(ro.IP, ro.Port), netip.AddrPortFrom(addrs[ri], ports[rj]); got != want {
				t.Errorf("RESPONSE-ORIGIN %s, want %s", got, want)
			}
			if got, want := toAddrPort(oa.IP, oa.Port), netip.AddrPortFrom(addrs[1-tc.i], ports[1-tc.j]); got != want {
				t.Errorf("OTHER-ADDRESS %s, want %s", got, want)
			}
		})
	}
}

func TestAnswerRejectsGarbage(t *testing.T) {
	s, _, _ := loopbackServer(t)
	defer s.close()
	from := netip.MustParseAddrPort("192.0.2.10:5062")
	bad := [][]byte{nil, []byte("INVITE sip:x SIP/2.0\r\n"), make([]byte, 20)}
	ind := pstun.MustBuild(pstun.TransactionID, pstun.NewType(pstun.MethodBinding, pstun.ClassIndication))
	bad = append(bad, ind.Raw)
	short := pstun.MustBuild(pstun.TransactionID, pstun.BindingRequest, pstun.RawAttribute{Type: pstun.AttrChangeRequest, Length: 2, Value: []byte{0, 6}})
	bad = append(bad, short.Raw)
	for i, b := range bad {
		if _, _, _, err := s.answer(b, from, 0, 0); err == nil {
			t.Errorf("case %d: answered %q", i, b)
		}
	}
}

// Over loopback there is no NAT and no filter: the client must say so.
func TestDiscoverWithoutNAT(t *testing.T) {
	s, addrs, ports := loopbackServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	c := &Client{Server: netip.AddrPortFrom(addrs[0], ports[0]), RTO: 100 * time.Millisecond, Tries: 3}
	r, err := c.Discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.NoNAT || r.Mapping != EndpointIndependent || r.Filtering != EndpointIndependent || !r.FullCone() {
		t.Errorf("got %+v, want no NAT, EIF", r)
	}
	if r.Other != netip.AddrPortFrom(addrs[1], ports[1]) {
		t.Errorf("other address %s", r.Other)
	}
}

func TestDiscoverNoServer(t *testing.T) {
	c := &Client{Server: netip.MustParseAddrPort("127.0.0.1:9"), RTO: 20 * time.Millisecond, Tries: 2}
	if _, err := c.Discover(context.Background()); err == nil {
		t.Fatal("no error without a server")
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
		full bool
	}{
		{Result{Mapping: EndpointIndependent, Filtering: EndpointIndependent}, "EIM + EIF: full cone NAT", true},
		{Result{Mapping: EndpointIndependent, Filtering: AddressAndPortDependent}, "EIM + APDF: port-restricted cone NAT", false},
		{Result{Mapping: EndpointIndependent, Filtering: AddressDependent}, "EIM + ADF: address-restricted cone NAT", false},
		{Result{Mapping: AddressAndPortDependent, Filtering: AddressAndPortDependent}, "APDM + APDF: symmetric NAT", false},
		{Result{NoNAT: true, Mapping: EndpointIndependent, Filtering: EndpointIndependent}, "no NAT (mapped address is the local one), filtering EIF", true},
		{Result{Mapping: Unknown, Filtering: EndpointIndependent}, "?M + EIF: restricted NAT", false},
	} {
		if got := tc.r.Verdict(); got != tc.want || tc.r.FullCone() != tc.full {
			t.Errorf("%+v: %q full %v, want %q %v", tc.r, got, tc.r.FullCone(), tc.want, tc.full)
		}
	}
}

// The codec of msg.go against pion/stun as an independent implementation: pion's
// answers decode here, and requests built here decode in pion with a valid
// FINGERPRINT.
func TestCodecAgainstPion(t *testing.T) {
	for _, mapped := range []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:40002"), netip.MustParseAddrPort("[2001:db8::7]:5060")} {
		other := netip.MustParseAddrPort("198.51.100.2:3479")
		resp := pstun.MustBuild(pstun.TransactionID, pstun.BindingSuccess,
			&pstun.XORMappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())},
			&pstun.OtherAddress{IP: other.Addr().AsSlice(), Port: int(other.Port())}, pstun.Fingerprint)
		m, err := parse(resp.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if m.typ != typeBindingSuccess || m.tid != resp.TransactionID {
			t.Errorf("type 0x%04x, transaction %x; want a binding success of %x", m.typ, m.tid, resp.TransactionID)
		}
		if got, err := m.addrOf(attrXORMappedAddress); err != nil || got != mapped {
			t.Errorf("XOR-MAPPED-ADDRESS %s (%v), want %s", got, err, mapped)
		}
		if got, err := m.addrOf(attrOtherAddress); err != nil || got != other {
			t.Errorf("OTHER-ADDRESS %s (%v), want %s", got, err, other)
		}
		bad := slices.Clone(resp.Raw)
		bad[len(bad)-1] ^= 1
		if _, err := parse(bad); err == nil {
			t.Error("a wrong FINGERPRINT was accepted")
		}
	}
	tid, _ := newTransactionID()
	req := build(typeBindingRequest, tid, attribute{typ: attrChangeRequest, val: []byte{0, 0, 0, changeIP | changePort}})
	m := &pstun.Message{Raw: req}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	if m.Type != pstun.BindingRequest || m.TransactionID != tid {
		t.Errorf("pion decodes %s %x", m.Type, m.TransactionID)
	}
	if err := pstun.Fingerprint.Check(m); err != nil {
		t.Errorf("pion: %v", err)
	}
	if v, err := m.Get(pstun.AttrChangeRequest); err != nil || binary.BigEndian.Uint32(v) != changeIP|changePort {
		t.Errorf("CHANGE-REQUEST %x (%v)", v, err)
	}
}
