// Package dhcpd is the DHCPv4 server of the VoIP network: a
// pool, static leases, the options phones need (router and DNS = the gateway, NTP,
// the provisioning URL in the options each vendor reads) and leases that survive a
// daemon restart (a JSON file written atomically on every change).
//
// The protocol logic (Handle) is a function of the request and the lease table,
// tested without sockets; Run binds it to the VoIP interface. The message codec is
// in msg.go.
package dhcpd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/config"
)

// Config of one server.
type Config struct {
	Ifname    string
	ServerIP  netip.Addr   // the gateway: server identifier, router and DNS server
	Subnet    netip.Prefix // the VoIP subnet
	DHCP      config.DHCP
	LeaseFile string
	Log       *slog.Logger
	Now       func() time.Time // for tests; default time.Now
}

// Lease is one phone's address.
type Lease struct {
	MAC      string     `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`
	Vendor   string     `json:"vendor,omitempty"`       // yealink, polycom, gigaset or the raw option 60
	Class    string     `json:"vendor_class,omitempty"` // option 60 as sent
	Expires  time.Time  `json:"expires"`
	Static   bool       `json:"static,omitempty"`
}

// offerHold is how long an offered address stays reserved for the client.
const offerHold = 30 * time.Second

// declineHold keeps an address another host answers on (DHCPDECLINE) out of the pool.
const declineHold = 10 * time.Minute

// Server hands out addresses.
type Server struct {
	cfg Config

	mu       sync.Mutex
	leases   map[string]*Lease // by MAC
	offers   map[string]*Lease // by MAC, not persisted
	declined map[netip.Addr]time.Time
	static   map[string]config.StaticLease
}

// New loads the lease file (a missing file is an empty table).
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if !cfg.ServerIP.Is4() || !cfg.Subnet.Contains(cfg.ServerIP) {
		return nil, fmt.Errorf("dhcp: server address %v is not in the subnet %v", cfg.ServerIP, cfg.Subnet)
	}
	s := &Server{cfg: cfg, leases: map[string]*Lease{}, offers: map[string]*Lease{}, declined: map[netip.Addr]time.Time{}, static: map[string]config.StaticLease{}}
	for _, sl := range cfg.DHCP.Static {
		s.static[sl.MAC] = sl
	}
	if cfg.LeaseFile != "" {
		b, err := os.ReadFile(cfg.LeaseFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("dhcp: read leases: %w", err)
		default:
			var ls []Lease
			if err := json.Unmarshal(b, &ls); err != nil {
				// A corrupt file must not keep the phones from getting addresses:
				// start empty, phones re-request their old address (option 50).
				cfg.Log.Warn("dhcp: lease file is corrupt; starting with no leases", "file", cfg.LeaseFile, "err", err)
			}
			for _, l := range ls {
				if cfg.Subnet.Contains(l.IP) && !l.Static {
					l := l
					s.leases[l.MAC] = &l
				}
			}
		}
	}
	return s, nil
}

// Leases returns the current leases, static ones included, sorted by address.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Lease
	for _, l := range s.leases {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out
}

func (s *Server) saveLocked() {
	if s.cfg.LeaseFile == "" {
		return
	}
	ls := make([]Lease, 0, len(s.leases))
	for _, l := range s.leases {
		ls = append(ls, *l)
	}
	slices.SortFunc(ls, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	b, err := json.MarshalIndent(ls, "", "  ")
	if err == nil {
		err = writeAtomic(s.cfg.LeaseFile, b)
	}
	if err != nil {
		s.cfg.Log.Error("dhcp: could not save leases", "file", s.cfg.LeaseFile, "err", err)
	}
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".leases-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// inPool reports whether a may be handed out dynamically.
func (s *Server) inPool(a netip.Addr) bool {
	d := s.cfg.DHCP
	return a.IsValid() && d.PoolFirst.Compare(a) <= 0 && a.Compare(d.PoolLast) <= 0 && a != s.cfg.ServerIP
}

// holder returns the MAC that holds a (lease, offer or static), or "".
func (s *Server) holderLocked(a netip.Addr, now time.Time) string {
	for mac, sl := range s.static {
		if sl.IP == a {
			return mac
		}
	}
	for mac, l := range s.leases {
		if l.IP == a && l.Expires.After(now) {
			return mac
		}
	}
	for mac, l := range s.offers {
		if l.IP == a && l.Expires.After(now) {
			return mac
		}
	}
	return ""
}

// usable reports whether a can be given to mac now.
func (s *Server) usableLocked(a netip.Addr, mac string, now time.Time) bool {
	if t, ok := s.declined[a]; ok && t.After(now) {
		return false
	}
	h := s.holderLocked(a, now)
	return h == "" || h == mac
}

// choose picks the address for mac: its static lease, its previous lease, the
// address it asks for, or the first free one (then the longest-expired one).
func (s *Server) chooseLocked(mac string, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if sl, ok := s.static[mac]; ok {
		return sl.IP, true
	}
	if l, ok := s.offers[mac]; ok && s.usableLocked(l.IP, mac, now) {
		return l.IP, false
	}
	if l, ok := s.leases[mac]; ok && s.inPool(l.IP) && s.usableLocked(l.IP, mac, now) {
		return l.IP, false
	}
	if s.inPool(requested) && s.usableLocked(requested, mac, now) {
		return requested, false
	}
	d := s.cfg.DHCP
	for a := d.PoolFirst; a.IsValid() && a.Compare(d.PoolLast) <= 0; a = a.Next() {
		if !s.inPool(a) || !s.usableLocked(a, mac, now) {
			continue
		}
		if owner := s.ownerOfExpiredLocked(a); owner != "" && owner != mac {
			continue // keep expired leases for their phones while free addresses remain
		}
		return a, false
	}
	// Pool full of (expired) leases: take the one that expired longest ago.
	var oldest *Lease
	for m, l := range s.leases {
		if m != mac && !l.Expires.After(now) && s.inPool(l.IP) && s.usableLocked(l.IP, mac, now) && (oldest == nil || l.Expires.Before(oldest.Expires)) {
			oldest = l
		}
	}
	if oldest != nil {
		delete(s.leases, oldest.MAC)
		return oldest.IP, false
	}
	return netip.Addr{}, false
}

func (s *Server) ownerOfExpiredLocked(a netip.Addr) string {
	for m, l := range s.leases {
		if l.IP == a {
			return m
		}
	}
	return ""
}

// Handle answers one request; nil means no reply.
func (s *Server) Handle(req *Message) *Message {
	if req.Op != opRequest || len(req.CHAddr) != 6 {
		return nil
	}
	hw := net.HardwareAddr(req.CHAddr)
	mac := hw.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	switch req.MessageType() {
	case msgDiscover:
		a, _ := s.chooseLocked(mac, req.OptAddr(optRequestedIP), now)
		if !a.IsValid() {
			s.cfg.Log.Warn("dhcp: pool exhausted", "mac", mac)
			return nil
		}
		s.offers[mac] = &Lease{MAC: mac, IP: a, Expires: now.Add(offerHold)}
		return s.replyLocked(req, msgOffer, a)
	case msgRequest:
		return s.requestLocked(req, mac, now)
	case msgRelease:
		if l, ok := s.leases[mac]; ok && l.IP == req.CIAddr {
			delete(s.leases, mac)
			s.saveLocked()
		}
		return nil
	case msgDecline:
		a := req.OptAddr(optRequestedIP)
		if l, ok := s.leases[mac]; ok && l.IP == a {
			delete(s.leases, mac)
			s.saveLocked()
		}
		delete(s.offers, mac)
		if a.IsValid() {
			s.declined[a] = now.Add(declineHold)
			s.cfg.Log.Warn("dhcp: address declined (in use by another host)", "addr", a, "mac", mac)
		}
		return nil
	case msgInform:
		return s.replyLocked(req, msgAck, netip.Addr{})
	}
	return nil
}

func (s *Server) requestLocked(req *Message, mac string, now time.Time) *Message {
	if sid := req.OptAddr(optServerID); sid.IsValid() && !sid.IsUnspecified() {
		if sid != s.cfg.ServerIP {
			delete(s.offers, mac) // it chose another server
			return nil
		}
	}
	want := req.OptAddr(optRequestedIP)
	if !want.IsValid() {
		want = req.CIAddr // renewing or rebinding
	}
	var ok bool
	switch {
	case !want.IsValid() || !s.cfg.Subnet.Contains(want):
		ok = false
	case s.static[mac].IP.IsValid():
		ok = want == s.static[mac].IP
	default:
		ok = s.inPool(want) && s.usableLocked(want, mac, now)
	}
	if !ok {
		// Also for an INIT-REBOOT with an address from another network: the NAK
		// makes the phone start over with a DISCOVER here.
		return s.nakLocked(req)
	}
	delete(s.offers, mac)
	_, static := s.static[mac]
	class, _ := req.Opt(optVendorClass)
	l := &Lease{MAC: mac, IP: want, Hostname: clientName(req, s.static[mac]), Class: class,
		Expires: now.Add(s.cfg.DHCP.LeaseTime), Static: static}
	l.Vendor = Vendor(l.Class, req.CHAddr)
	s.leases[mac] = l
	s.saveLocked()
	return s.replyLocked(req, msgAck, want)
}

func clientName(req *Message, sl config.StaticLease) string {
	if sl.Name != "" {
		return sl.Name
	}
	name, _ := req.Opt(optHostName)
	return name
}

func (s *Server) nakLocked(req *Message) *Message {
	r := newReply(req, msgNak)
	r.SetOpt(optServerID, addrBytes(s.cfg.ServerIP))
	r.Flags |= flagBroadcast
	return r
}

// replyLocked builds an OFFER or ACK with the phone's options; yiaddr zero for INFORM.
// Options are set in this order, a later one replacing an earlier one of the same
// code (so a configured option can override a fixed one, and NTP comes last).
func (s *Server) replyLocked(req *Message, mt uint8, yiaddr netip.Addr) *Message {
	gw := addrBytes(s.cfg.ServerIP)
	r := newReply(req, mt)
	r.SetOpt(optServerID, gw)
	r.SetOpt(optSubnetMask, u32Bytes(^uint32(0)<<(32-s.cfg.Subnet.Bits())))
	r.SetOpt(optRouter, gw)
	r.SetOpt(optDNS, gw)
	if yiaddr.IsValid() {
		lt := uint32(s.cfg.DHCP.LeaseTime / time.Second)
		r.YIAddr = yiaddr
		r.SetOpt(optLeaseTime, u32Bytes(lt))
		r.SetOpt(optRenewalTime, u32Bytes(lt/2))
		r.SetOpt(optRebindingTime, u32Bytes(lt/8*7))
	}
	if sl, ok := s.static[net.HardwareAddr(req.CHAddr).String()]; ok && sl.Name != "" {
		r.SetOpt(optHostName, sl.Name)
	}
	class, _ := req.Opt(optVendorClass)
	for _, o := range PhoneOptions(s.cfg.DHCP, class, req.CHAddr) {
		r.SetOpt(o.Code, o.Value)
	}
	if len(s.cfg.DHCP.NTP) > 0 {
		r.SetOpt(optNTP, addrBytes(s.cfg.DHCP.NTP...))
	}
	return r
}

// Option is one option value a phone gets (besides the fixed ones).
type Option struct {
	Code  uint8
	Value string
}

// Provisioning options (see the README's "DHCP options per phone vendor"):
//   - 66 (TFTP server name): read by Yealink, Polycom, Gigaset; a full URL is accepted.
//   - 160: Polycom UC Software's default "custom" boot server option, read before 66;
//     Yealink reads a configurable custom option (often set to 160) before 66.
//   - 114: Gigaset's provisioning URL, read before 66. Sent only to Gigaset phones:
//     RFC 8910 gives option 114 to the captive-portal URI, which other clients
//     would obey.
const (
	OptTFTPServerName = 66
	OptPolycomBoot    = 160
	OptGigasetURL     = 114
)

// PhoneOptions returns the options for a phone with this vendor class and MAC.
func PhoneOptions(d config.DHCP, class string, mac net.HardwareAddr) []Option {
	var out []Option
	vendor := Vendor(class, mac)
	if d.ProvisioningURL != "" {
		out = append(out, Option{OptTFTPServerName, d.ProvisioningURL}, Option{OptPolycomBoot, d.ProvisioningURL})
		if vendor == "gigaset" {
			out = append(out, Option{OptGigasetURL, d.ProvisioningURL})
		}
	}
	for _, o := range d.Options {
		if o.Vendor != "" && !strings.Contains(strings.ToLower(class), strings.ToLower(o.Vendor)) && vendor != strings.ToLower(o.Vendor) {
			continue
		}
		// A configured option replaces the provisioning default of the same code.
		out = slices.DeleteFunc(out, func(x Option) bool { return x.Code == o.Code })
		out = append(out, Option{o.Code, o.Value})
	}
	return out
}

// ouis are the MAC prefixes of the three vendors' phones (IEEE registry), used
// when a phone sends no vendor class.
var ouis = map[string]string{
	"00:15:65": "yealink", "80:5e:c0": "yealink", "24:9a:d8": "yealink", "44:db:d2": "yealink",
	"00:04:f2": "polycom", "64:16:7f": "polycom", "48:25:67": "polycom",
	"7c:2f:80": "gigaset", "00:01:e3": "gigaset",
}

// Vendor names the phone's vendor from its vendor class (option 60) or, without
// one, its MAC's OUI; "" when unknown.
func Vendor(class string, mac net.HardwareAddr) string {
	lc := strings.ToLower(class)
	for _, v := range []string{"yealink", "polycom", "gigaset"} {
		if strings.Contains(lc, v) {
			return v
		}
	}
	if len(mac) >= 3 {
		if v, ok := ouis[mac[:3].String()]; ok {
			return v
		}
	}
	return ""
}

// ErrPortInUse wraps a bind error when another DHCP server holds port 67.
var ErrPortInUse = errors.New("port in use")

// readBufSize holds any DHCP message: clients send at most their interface's MTU
// (RFC 2131 allows 576 bytes unless option 57 says more).
const readBufSize = 4096

// Run serves on the interface until ctx ends. Requests are answered one after the
// other: Handle holds the lease table's lock anyway.
func (s *Server) Run(ctx context.Context) error {
	conn, err := listen(ctx, s.cfg.Ifname)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w: %w: another DHCP server (dnsmasq?) holds port 67 on %s. Make it leave the VoIP interface alone "+
				"(OpenWrt: uci set dhcp.<VoIP interface>.ignore=1; uci commit dhcp; service dnsmasq restart) or remove voipgw's dhcp section",
				ErrPortInUse, err, s.cfg.Ifname)
		}
		return fmt.Errorf("dhcp: listen on %s: %w", s.cfg.Ifname, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	buf := make([]byte, readBufSize)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp server: %w", err)
		}
		req, err := ParseMessage(buf[:n])
		if err != nil {
			s.cfg.Log.Debug("dhcp: ignored a malformed message", "err", err)
			continue
		}
		s.serve(conn, req)
	}
}

// listen opens the server's socket: UDP port 67 on all addresses (requests come from
// 0.0.0.0 to 255.255.255.255), bound to the VoIP interface, allowed to broadcast.
// SO_REUSEADDR and SO_REUSEPORT are set as the server did with insomniacslk/dhcp's
// server4, so a restarted daemon binds while the old socket is closing.
func listen(ctx context.Context, ifname string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			for _, o := range []int{unix.SO_BROADCAST, unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1); serr != nil {
					serr = fmt.Errorf("setsockopt %d: %w", o, serr)
					return
				}
			}
			if ifname != "" {
				if serr = unix.BindToDevice(int(fd), ifname); serr != nil {
					serr = fmt.Errorf("bind to interface %s: %w", ifname, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(ctx, "udp4", fmt.Sprintf(":%d", serverPort))
}

func (s *Server) serve(conn net.PacketConn, req *Message) {
	resp := s.Handle(req)
	if resp == nil {
		return
	}
	// RFC 2131 4.1: to a relay, to a configured client's address, else broadcast
	// (a UDP socket cannot unicast to an address the client does not have yet).
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort}
	switch {
	case req.GIAddr.IsValid() && !req.GIAddr.IsUnspecified():
		dst = &net.UDPAddr{IP: req.GIAddr.AsSlice(), Port: serverPort}
	case resp.MessageType() != msgNak && req.CIAddr.IsValid() && !req.CIAddr.IsUnspecified():
		dst = &net.UDPAddr{IP: req.CIAddr.AsSlice(), Port: clientPort}
	}
	if _, err := conn.WriteTo(resp.Marshal(), dst); err != nil {
		s.cfg.Log.Warn("dhcp: send reply", "to", dst, "err", err)
	}
}
