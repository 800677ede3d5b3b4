package dhcpd

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/voipgw/voipgw/config"
)

// The codec is checked against insomniacslk/dhcp, which the server used before
// and which stays a test dependency: what one writes the other reads the same, the
// replies are the bytes the library-based server sent, and what the library
// rejects this codec rejects.

// diffLib describes how m differs from the library's decoding l ("" when equal).
func diffLib(m *Message, l *dhcpv4.DHCPv4) string {
	var d []string
	ne := func(what string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			d = append(d, fmt.Sprintf("%s: %v, library %v", what, a, b))
		}
	}
	ne("op", m.Op, uint8(l.OpCode))
	ne("htype", m.HType, uint8(l.HWType))
	ne("hops", m.Hops, l.HopCount)
	ne("xid", m.XID, [4]byte(l.TransactionID))
	ne("secs", m.Secs, l.NumSeconds)
	ne("flags", m.Flags, l.Flags)
	ne("ciaddr", m.CIAddr, l.ClientIPAddr)
	ne("yiaddr", m.YIAddr, l.YourIPAddr)
	ne("siaddr", m.SIAddr, l.ServerIPAddr)
	ne("giaddr", m.GIAddr, l.GatewayIPAddr)
	if !bytes.Equal(m.CHAddr, l.ClientHWAddr) {
		d = append(d, fmt.Sprintf("chaddr: %x, library %x", m.CHAddr, []byte(l.ClientHWAddr)))
	}
	ne("sname", m.SName, l.ServerHostName)
	ne("file", m.File, l.BootFileName)
	if len(m.Options) != len(l.Options) {
		d = append(d, fmt.Sprintf("%d options, library %d", len(m.Options), len(l.Options)))
	}
	for _, o := range m.Options {
		lv, ok := l.Options[o.Code]
		if !ok || !bytes.Equal([]byte(o.Value), lv) {
			d = append(d, fmt.Sprintf("option %d: %x, library %x (present %v)", o.Code, o.Value, lv, ok))
		}
	}
	return strings.Join(d, "; ")
}

// toLib is m as the library's struct.
func toLib(m *Message) *dhcpv4.DHCPv4 {
	l := &dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeType(m.Op), HWType: iana.HWType(m.HType), HopCount: m.Hops,
		TransactionID: dhcpv4.TransactionID(m.XID), NumSeconds: m.Secs, Flags: m.Flags,
		ClientIPAddr: m.CIAddr.AsSlice(), YourIPAddr: m.YIAddr.AsSlice(), ServerIPAddr: m.SIAddr.AsSlice(),
		GatewayIPAddr: m.GIAddr.AsSlice(), ClientHWAddr: m.CHAddr, ServerHostName: m.SName, BootFileName: m.File,
		Options: dhcpv4.Options{}}
	for _, o := range m.Options {
		l.Options[o.Code] = []byte(o.Value)
	}
	return l
}

func libMessages(t testing.TB) []*dhcpv4.DHCPv4 {
	hw := net.HardwareAddr{0x80, 0x5e, 0xc0, 1, 2, 3}
	long := strings.Repeat("x", 300) // split into two options on the wire, joined again
	relay := dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("circuit-7")))
	var out []*dhcpv4.DHCPv4
	add := func(m *dhcpv4.DHCPv4, err error) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	add(dhcpv4.NewDiscovery(hw))
	add(dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("yealink SIP-T54W")),
		dhcpv4.WithOption(dhcpv4.OptHostName("T54W")), dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, hw...))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 100))),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionTFTPServerName, dhcpv4.GenericOptionCode(160), dhcpv4.OptionNTPServers)))
	add(dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 101)),
		dhcpv4.WithGatewayIP(net.IPv4(198, 51, 100, 1)), dhcpv4.WithOption(relay), dhcpv4.WithBroadcast(true)))
	add(dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 101)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 1)))))
	add(dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 102)))))
	add(dhcpv4.NewInform(hw, net.IPv4(192, 0, 2, 77)))
	add(dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(224), []byte(long)), dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(225), nil)))
	add(dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}),
		dhcpv4.WithHwAddr(nil), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))) // hlen 0
	m, _ := dhcpv4.NewDiscovery(hw)
	m.ServerHostName, m.BootFileName, m.HopCount, m.NumSeconds = "tftp.example.com", "boot/phone.cfg", 3, 1234
	add(m, nil)
	m, _ = dhcpv4.NewDiscovery(hw)
	m.ServerHostName, m.BootFileName = strings.Repeat("s", 63), strings.Repeat("f", 127) // fields full but for the NUL
	add(m, nil)
	return out
}

func TestParseLibraryMessages(t *testing.T) {
	for i, lm := range libMessages(t) {
		wire := lm.ToBytes()
		m, err := ParseMessage(wire)
		if err != nil {
			t.Errorf("%d: %v\n%s", i, err, lm)
			continue
		}
		l, err := dhcpv4.FromBytes(wire)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffLib(m, l); d != "" {
			t.Errorf("%d: %s", i, d)
		}
		// The reverse: written by this codec, the same bytes as the library's.
		if got := m.Marshal(); !bytes.Equal(got, wire) {
			t.Errorf("%d: re-encoded\n%x\nlibrary\n%x", i, got, wire)
		}
	}
}

func TestMarshalLibraryReads(t *testing.T) {
	m := &Message{Op: opReply, HType: 1, Hops: 1, XID: [4]byte{1, 2, 3, 4}, Secs: 9, Flags: flagBroadcast,
		CIAddr: zero4, YIAddr: netip.MustParseAddr("192.0.2.100"), SIAddr: netip.MustParseAddr("192.0.2.1"),
		GIAddr: netip.MustParseAddr("198.51.100.1"), CHAddr: []byte{2, 0, 0, 0, 0, 1}, SName: "gw", File: "f",
		Options: []Option{{optRelayAgent, "\x01\x02ab"}, {optMessageType, "\x02"}, {optNTP, addrBytes(gw, gw)},
			{OptTFTPServerName, strings.Repeat("u", 600)}, {200, ""}, {optSubnetMask, u32Bytes(0xffffff80)}}}
	wire := m.Marshal()
	l, err := dhcpv4.FromBytes(wire)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffLib(m, l); d != "" {
		t.Error(d)
	}
	if want := toLib(m).ToBytes(); !bytes.Equal(wire, want) {
		t.Errorf("encoded\n%x\nlibrary\n%x", wire, want)
	}
	if len((&Message{CHAddr: make([]byte, 6)}).Marshal()) != bootpMinLen {
		t.Error("a short message is not padded to the BOOTP minimum")
	}
}

// libReply and libNak are the replies as the server built them with the library
// (the code this package had before its own codec): the reference for the bytes.
func libReply(s *Server, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, yiaddr netip.Addr) *dhcpv4.DHCPv4 {
	gw := net.IP(s.cfg.ServerIP.AsSlice())
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(gw)),
		dhcpv4.WithNetmask(net.CIDRMask(s.cfg.Subnet.Bits(), 32)),
		dhcpv4.WithRouter(gw),
		dhcpv4.WithDNS(gw),
	}
	if yiaddr.IsValid() {
		lt := uint32(s.cfg.DHCP.LeaseTime / time.Second)
		mods = append(mods, dhcpv4.WithYourIP(yiaddr.AsSlice()), dhcpv4.WithLeaseTime(lt),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(time.Duration(lt/2)*time.Second)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(time.Duration(lt/8*7)*time.Second)))
	}
	if sl, ok := s.static[req.ClientHWAddr.String()]; ok && sl.Name != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(sl.Name)))
	}
	for _, o := range PhoneOptions(s.cfg.DHCP, req.ClassIdentifier(), req.ClientHWAddr) {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(o.Code), []byte(o.Value)))
	}
	if len(s.cfg.DHCP.NTP) > 0 {
		var ips []net.IP
		for _, a := range s.cfg.DHCP.NTP {
			ips = append(ips, a.AsSlice())
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptNTPServers(ips...)))
	}
	r, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		panic(err)
	}
	return r
}

func libNak(s *Server, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	r, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())), dhcpv4.WithBroadcast(true))
	if err != nil {
		panic(err)
	}
	return r
}

func TestRepliesAsTheLibraryBuiltThem(t *testing.T) {
	c := &clock{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	configs := []config.DHCP{
		{},
		{NTP: []netip.Addr{gw, netip.MustParseAddr("198.51.100.123")}, ProvisioningURL: "https://prov.example.com/p/", LeaseTime: 7*time.Hour + 13*time.Second},
		{ProvisioningURL: strings.Repeat("https://long.example.com/", 12), // over 255 bytes
			Options: []config.DHCPOption{{Code: 160, Value: "https://poly.example.com/", Vendor: "polycom"}, {Code: 150, Value: "x"},
				{Code: 3, Value: "\xc0\x00\x02\x02"}, {Code: 42, Value: "ntp"}, {Code: 61, Value: "id"}, {Code: 82, Value: ""}},
			Static: []config.StaticLease{{MAC: "80:5e:c0:01:02:03", IP: netip.MustParseAddr("192.0.2.50"), Name: "reception"}}},
	}
	for ci, d := range configs {
		s := newServer(t, "", c, d)
		for ri, lm := range libMessages(t) {
			wire := lm.ToBytes()
			req, err := ParseMessage(wire)
			if err != nil {
				t.Fatal(err)
			}
			lreq, _ := dhcpv4.FromBytes(wire)
			for _, tc := range []struct {
				mt     dhcpv4.MessageType
				yiaddr netip.Addr
			}{{dhcpv4.MessageTypeOffer, netip.MustParseAddr("192.0.2.101")}, {dhcpv4.MessageTypeAck, netip.MustParseAddr("192.0.2.102")}, {dhcpv4.MessageTypeAck, netip.Addr{}}} {
				got := s.replyLocked(req, uint8(tc.mt), tc.yiaddr).Marshal()
				if want := libReply(s, lreq, tc.mt, tc.yiaddr).ToBytes(); !bytes.Equal(got, want) {
					t.Errorf("config %d request %d %s %v:\n got %x\nwant %x", ci, ri, tc.mt, tc.yiaddr, got, want)
				}
			}
			if got, want := s.nakLocked(req).Marshal(), libNak(s, lreq).ToBytes(); !bytes.Equal(got, want) {
				t.Errorf("config %d request %d NAK:\n got %x\nwant %x", ci, ri, got, want)
			}
		}
	}
}

func TestParseMalformed(t *testing.T) {
	valid, _ := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1}, dhcpv4.WithOption(dhcpv4.OptHostName("phone")))
	wire := valid.ToBytes()
	optStart := headerLen + 4
	set := func(b []byte, at int, v ...byte) []byte {
		b = slices.Clone(b)
		copy(b[at:], v)
		return b
	}
	for name, b := range map[string][]byte{
		"empty":               nil,
		"header only":         wire[:headerLen],
		"no cookie":           set(wire, headerLen, 0, 0, 0, 0),
		"code without length": append(slices.Clone(wire[:optStart]), 12),
		"length past the end": append(slices.Clone(wire[:optStart]), 12, 10, 'a', 'b'),
		"pad but no End":      append(slices.Clone(wire[:optStart]), 0, 0, 0),
		"option then no End":  append(slices.Clone(wire[:optStart]), 53, 1, 1),
	} {
		if m, err := ParseMessage(b); err == nil {
			t.Errorf("%s: parsed %+v", name, m)
		}
		if _, err := dhcpv4.FromBytes(b); err == nil {
			t.Errorf("%s: the library reads it (the test's premise is wrong)", name)
		}
	}
	// No options at all (not even End) is a message, as for the library.
	if m, err := ParseMessage(wire[:optStart]); err != nil || len(m.Options) != 0 {
		t.Errorf("a message without options: %+v, %v", m, err)
	}
	// Every truncation: an error exactly where the library has one.
	for n := range len(wire) {
		_, err := ParseMessage(wire[:n])
		_, lerr := dhcpv4.FromBytes(wire[:n])
		if (err == nil) != (lerr == nil) {
			t.Errorf("%d of %d bytes: %v, library %v", n, len(wire), err, lerr)
		}
	}
}

// FuzzParseMessage: never panics, accepts exactly what the library accepts and
// reads it the same, and what it writes reads back the same.
func FuzzParseMessage(f *testing.F) {
	for _, m := range libMessages(f) {
		f.Add(m.ToBytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		l, lerr := dhcpv4.FromBytes(b)
		if (err == nil) != (lerr == nil) {
			t.Fatalf("error %v, library %v", err, lerr)
		}
		if err != nil {
			return
		}
		if d := diffLib(m, l); d != "" {
			t.Fatal(d)
		}
		wire := m.Marshal()
		if want := l.ToBytes(); !bytes.Equal(wire, want) {
			t.Fatalf("encoded\n%x\nlibrary\n%x", wire, want)
		}
		m2, err := ParseMessage(wire)
		if err != nil {
			t.Fatal(err)
		}
		l2, err := dhcpv4.FromBytes(wire)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffLib(m2, l2); d != "" {
			t.Fatal(d)
		}
	})
}
