package dhcpd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/voipgw/voipgw/config"
	"github.com/voipgw/voipgw/lab"
)

var (
	gw     = netip.MustParseAddr("192.0.2.1")
	subnet = netip.MustParsePrefix("192.0.2.0/25")
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newServer(t *testing.T, file string, c *clock, d config.DHCP) *Server {
	t.Helper()
	if !d.PoolFirst.IsValid() {
		d.PoolFirst, d.PoolLast = netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.102")
	}
	if d.LeaseTime == 0 {
		d.LeaseTime = time.Hour
	}
	d.Enabled = true
	s, err := New(Config{Ifname: "voip0", ServerIP: gw, Subnet: subnet, DHCP: d, LeaseFile: file, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func discover(t *testing.T, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func request(t *testing.T, offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// handle passes a request built by insomniacslk/dhcp (the phones' side in these
// tests) through the server as it arrives on the wire, and decodes the reply with
// the library: each test is also a test of the codec in both directions.
func handle(t *testing.T, s *Server, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := ParseMessage(req.ToBytes())
	if err != nil {
		t.Fatalf("parse %v: %v", req, err)
	}
	r := s.Handle(m)
	if r == nil {
		return nil
	}
	out, err := dhcpv4.FromBytes(r.Marshal())
	if err != nil {
		t.Fatalf("the library cannot read the reply %+v: %v", r, err)
	}
	return out
}

// dora runs DISCOVER/OFFER/REQUEST/ACK and returns the ACK.
func dora(t *testing.T, s *Server, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	offer := handle(t, s, discover(t, hw, mods...))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("no offer for %s: %v", hw, offer)
	}
	ack := handle(t, s, request(t, offer, mods...))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("no ack for %s: %v", hw, ack)
	}
	return ack
}

func TestLeaseWithOptions(t *testing.T) {
	c := &clock{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, "", c, config.DHCP{NTP: []netip.Addr{gw}, ProvisioningURL: "https://prov.example.com/p/"})
	ack := dora(t, s, mac("80:5e:c0:00:00:01"), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("yealink")),
		dhcpv4.WithOption(dhcpv4.OptHostName("T54W")))
	if got := ack.YourIPAddr.String(); got != "192.0.2.100" {
		t.Errorf("address %s, want the pool's first", got)
	}
	if r := ack.Router(); len(r) != 1 || !r[0].Equal(gw.AsSlice()) {
		t.Errorf("router %v", r)
	}
	if d := ack.DNS(); len(d) != 1 || !d[0].Equal(gw.AsSlice()) {
		t.Errorf("DNS %v, want the gateway (the forwarder)", d)
	}
	if n := ack.NTPServers(); len(n) != 1 || !n[0].Equal(gw.AsSlice()) {
		t.Errorf("NTP (42) %v", n)
	}
	if ack.SubnetMask().String() != "ffffff80" || ack.IPAddressLeaseTime(0) != time.Hour {
		t.Errorf("mask %s lease %v", ack.SubnetMask(), ack.IPAddressLeaseTime(0))
	}
	if got := string(ack.GetOneOption(dhcpv4.OptionTFTPServerName)); got != "https://prov.example.com/p/" {
		t.Errorf("option 66 = %q", got)
	}
	if got := string(ack.GetOneOption(dhcpv4.GenericOptionCode(160))); got != "https://prov.example.com/p/" {
		t.Errorf("option 160 = %q", got)
	}
	if got := ack.GetOneOption(dhcpv4.GenericOptionCode(114)); got != nil {
		t.Errorf("option 114 (RFC 8910 captive portal) sent to a Yealink: %q", got)
	}
	ls := s.Leases()
	if len(ls) != 1 || ls[0].Vendor != "yealink" || ls[0].Hostname != "T54W" || !ls[0].Expires.Equal(c.t.Add(time.Hour)) {
		t.Errorf("leases %+v", ls)
	}
}

func TestVendorOptions(t *testing.T) {
	d := config.DHCP{ProvisioningURL: "https://prov.example.com/",
		Options: []config.DHCPOption{{Code: 160, Value: "https://poly.example.com/", Vendor: "polycom"}, {Code: 150, Value: "x"}}}
	for _, tc := range []struct {
		class string
		mac   string
		want  map[uint8]string
	}{
		{"", "7c:2f:80:00:00:01", map[uint8]string{66: "https://prov.example.com/", 160: "https://prov.example.com/", 114: "https://prov.example.com/", 150: "x"}},
		{"Polycom-VVX411", "02:00:00:00:00:01", map[uint8]string{66: "https://prov.example.com/", 160: "https://poly.example.com/", 150: "x"}},
		{"", "00:04:f2:00:00:01", map[uint8]string{66: "https://prov.example.com/", 160: "https://poly.example.com/", 150: "x"}},
		{"udhcp 1.36", "02:00:00:00:00:02", map[uint8]string{66: "https://prov.example.com/", 160: "https://prov.example.com/", 150: "x"}},
	} {
		got := map[uint8]string{}
		for _, o := range PhoneOptions(d, tc.class, mac(tc.mac)) {
			got[o.Code] = o.Value
		}
		if len(got) != len(tc.want) {
			t.Errorf("%q %s: options %v, want %v", tc.class, tc.mac, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%q %s: option %d = %q, want %q", tc.class, tc.mac, k, got[k], v)
			}
		}
	}
}

func TestLeasesPersistAndRenew(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leases.json")
	c := &clock{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, file, c, config.DHCP{})
	a := dora(t, s, mac("00:04:f2:00:00:01"))
	b := dora(t, s, mac("00:04:f2:00:00:02"))
	if a.YourIPAddr.Equal(b.YourIPAddr) {
		t.Fatalf("two phones got %s", a.YourIPAddr)
	}
	// A restarted daemon knows the leases: the phones keep their addresses and a
	// third phone gets another one.
	c.t = c.t.Add(10 * time.Minute)
	s2 := newServer(t, file, c, config.DHCP{})
	if ls := s2.Leases(); len(ls) != 2 {
		t.Fatalf("after restart: %+v", ls)
	}
	again := dora(t, s2, mac("00:04:f2:00:00:02"))
	if !again.YourIPAddr.Equal(b.YourIPAddr) {
		t.Errorf("after restart the phone got %s, had %s", again.YourIPAddr, b.YourIPAddr)
	}
	third := dora(t, s2, mac("00:04:f2:00:00:03"))
	if third.YourIPAddr.Equal(a.YourIPAddr) || third.YourIPAddr.Equal(b.YourIPAddr) {
		t.Errorf("third phone got a taken address %s", third.YourIPAddr)
	}
	// The pool (3 addresses) is full: a fourth phone gets no offer.
	if o := handle(t, s2, discover(t, mac("00:04:f2:00:00:04"))); o != nil {
		t.Errorf("offer %s from a full pool", o.YourIPAddr)
	}
	// Renewing (ciaddr set, no server id, no option 50) is acked.
	ren, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("00:04:f2:00:00:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(a.YourIPAddr))
	if r := handle(t, s2, ren); r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("renew: %v", r)
	}
	// Requesting another phone's address is refused.
	steal, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("00:04:f2:00:00:04")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(a.YourIPAddr)))
	if r := handle(t, s2, steal); r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for a taken address: %v, want NAK", r)
	}
	// After the leases expire, their addresses go to new phones.
	c.t = c.t.Add(2 * time.Hour)
	if o := handle(t, s2, discover(t, mac("00:04:f2:00:00:04"))); o == nil {
		t.Errorf("no offer once the leases expired")
	}
	// RELEASE frees the address at once.
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("00:04:f2:00:00:03")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(third.YourIPAddr))
	handle(t, s2, rel)
	for _, l := range s2.Leases() {
		if l.MAC == "00:04:f2:00:00:03" {
			t.Errorf("lease remains after RELEASE")
		}
	}
}

func TestStaticLease(t *testing.T) {
	c := &clock{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, "", c, config.DHCP{Static: []config.StaticLease{{MAC: "80:5e:c0:00:00:09", IP: netip.MustParseAddr("192.0.2.50"), Name: "reception"}}})
	ack := dora(t, s, mac("80:5e:c0:00:00:09"))
	if ack.YourIPAddr.String() != "192.0.2.50" || ack.HostName() != "reception" {
		t.Errorf("static lease: %s %q", ack.YourIPAddr, ack.HostName())
	}
	// Nobody else gets it, even by asking.
	other := handle(t, s, discover(t, mac("80:5e:c0:00:00:0a"), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 50)))))
	if other == nil || other.YourIPAddr.String() == "192.0.2.50" {
		t.Errorf("another phone was offered the static address: %v", other)
	}
}

func TestOtherServerChosen(t *testing.T) {
	c := &clock{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, "", c, config.DHCP{})
	offer := handle(t, s, discover(t, mac("02:00:00:00:00:01")))
	req := request(t, offer)
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 9)))
	if r := handle(t, s, req); r != nil {
		t.Errorf("answered a REQUEST for another server: %v", r)
	}
	if len(s.Leases()) != 0 {
		t.Errorf("leased anyway")
	}
}

// TestRunSocket opens the server's socket in a namespace of its own: it stops
// cleanly with its context, and another server on port 67 is reported as such.
func TestRunSocket(t *testing.T) {
	ns := lab.TestNS(t, "dhcpd")
	c := &clock{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, "", c, config.DHCP{})
	s.cfg.Ifname = "lo"
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return s.Run(ctx)
	})
	if err != nil {
		t.Fatalf("Run until its context ended: %v", err)
	}
	err = ns.Do(func() error {
		other, err := net.ListenPacket("udp4", ":67") // e.g. dnsmasq
		if err != nil {
			return err
		}
		defer other.Close()
		return s.Run(context.Background())
	})
	if !errors.Is(err, ErrPortInUse) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("with port 67 taken: %v, want ErrPortInUse", err)
	}
}
