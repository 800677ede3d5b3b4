package firewall

// OpenWrt's firewall4 (fw4) and voipgw's table are two tables at the same hooks.
// nftables accepts a packet only if every base chain at a hook accepts it, and fw4's
// forward chain has policy drop and accepts only what its zones, forwardings and
// rules allow. So voipgw's accept alone does not get the phones' traffic through an
// OpenWrt router: fw4 must also be told that the VoIP interface may forward to WAN,
// and, with the full cone, that WAN may start UDP flows to the phones.
//
// voipgw does that with an fw4 zone of its own, kept in /etc/config/firewall in up
// to three named sections (FW4ZoneSection, FW4ForwardingSection, FW4InboundSection).
// A zone rather than an nft include snippet because:
//   - it lives in fw4's own config, so every fw4 start, reload and restart renders it
//     again; nothing voipgw must re-create after fw4;
//   - it is what LuCI shows the admin (Network → Firewall lists the zone and the
//     rule), not a hidden accept rule;
//   - fw4 zones match devices directly (`list device`), so the zone needs no netifd
//     interface for the VLAN voipgw creates, and netifd reloads do not touch it.
//
// New inbound flows (the full cone, config nat): a second platform address calling
// a phone through the mapping its REGISTER made is a new flow, DNATed by voipgw's
// nat_dstnat (IPv4) or let in through a pinhole (IPv6, no NAT). fw4 accepts a new
// forwarded flow from WAN only through a rule or forwarding from the WAN zone, or
// with `ct status dnat accept` ("Accept port forwards"), which its template
// (ruleset.uc, chain forward_<zone>) writes only for a zone with a DNAT redirect
// (fw4.uc: dflags.dnat); IPv6 pinhole flows have no dnat status at all. On a stock
// OpenWrt without port forwards fw4 therefore rejected every call that came in
// through the full cone. The rule voipgw_inbound (src the WAN zone, dest voipgw's
// zone, proto udp, ACCEPT; fw4 renders it in forward_<wan> as `meta l4proto udp
// counter jump accept_to_voipgw`) lets them pass fw4. It exists only while the full
// cone is on (config nat enabled): without it voipgw lets no new flow in, so fw4
// need not either.
//
// The zone only permits; voipgw's table stays the authority for what the phones may
// reach and what may reach them (a drop in any table is final): forward to WAN is
// allowed by fw4 and then narrowed to the allowlist by voipgw; forward to LAN has no
// fw4 forwarding (fw4's default forward policy refuses it) and is dropped by voipgw
// first; input is ACCEPT in fw4 and narrowed to DHCP/DNS/NTP/ping by voipgw's input
// chain; new inbound UDP from WAN is allowed by fw4's rule and narrowed by voip_in to
// what came through a mapping (ct status dnat) or a pinhole, under nat.filtering;
// everything else it drops and counts (blocked_inbound).
//
// What is computed here is pure: the desired sections from voipgw's config and the
// current network and firewall files, and the `uci batch` commands that make the
// firewall file hold them. The OpenWrt init script feeds them to uci and reloads fw4.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"

	"github.com/voipgw/voipgw/uci"
)

// fw4Priority is where voipgw's filter chains hook in: one before fw4's (priority
// filter). At equal priority the kernel runs base chains in registration order, and
// every voipgw apply re-creates its table, so fw4 (started first at boot) would
// usually run first; its forward chain then rejects (RST / ICMP) what voipgw means to
// drop silently, and voipgw's counters (blocked_lan, blocked_inbound) never see those
// packets. Running first makes voipgw's silent drop and its counts the same with or
// without fw4. Accepts are unaffected: an accept only ends one base chain, and fw4
// still sees (and may drop) every packet voipgw accepts.
const (
	fw4Priority     = -1
	fw4PriorityText = "filter - 1"
)

// TablePresent reports whether table inet name exists. It is what the daemon's guard
// asks after every ruleset change (fw4 flush deletes every table), so it only looks
// the table up and decodes none of its rules: an expression some other feature adds
// and this nftables library cannot decode must not blind the guard.
func TablePresent(name string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer c.CloseLasting()
	return tableExists(c, name)
}

// runBeforeFW4 moves the table's filter base chains at priority filter to fw4Priority.
func runBeforeFW4(t *Table) {
	for _, c := range t.Chains {
		if h := c.Hook; h != nil && h.Type == nftables.ChainTypeFilter && h.Priority == 0 {
			h.Priority, h.PrioText = fw4Priority, fw4PriorityText
		}
	}
}

// Names of voipgw's sections in /etc/config/firewall and of its zone. Named sections,
// so that voipgw finds (and on removal deletes) exactly its own and nothing else.
const (
	FW4ZoneSection       = "voipgw_zone"
	FW4ForwardingSection = "voipgw_wan"
	FW4InboundSection    = "voipgw_inbound"
	FW4ZoneName          = "voipgw"
	// FW4InboundName is the inbound rule's name, which LuCI lists and fw4 puts in
	// the rule's comment ("!fw4: …"; nft keeps at most 128 bytes of a comment).
	FW4InboundName = "voipgw: UDP to the phones via full-cone mappings and pinholes"
)

// FW4Zone is the firewall4 state voipgw needs.
type FW4Zone struct {
	Name    string // zone name
	Device  string // the VoIP interface
	WANZone string // the zone that covers the WAN device; forwarding goes there
	// KeepHelpers leaves fw4's automatic conntrack helpers on for the zone (config
	// sip.alg '1'); by default the zone says auto_helper '0', or fw4 would attach the
	// SIP helper (the ALG the provider says to switch off) to the phones' traffic.
	KeepHelpers bool
	// Inbound lets new UDP flows from the WAN zone into the zone (the rule
	// FW4InboundSection): set while voipgw's full cone is on (config nat enabled),
	// whose mappings and pinholes are such flows. voipgw's voip_in still decides
	// which of them reach a phone.
	Inbound bool
}

// FW4ZoneFor computes the zone for the VoIP interface voipIf with forwarding to the
// fw4 zone that covers the WAN device wan. network (/etc/config/network) may be nil.
//
// The WAN zone is, in this order: a zone that lists the WAN device itself (`list
// device`); a zone whose `network` covers a netifd interface on that device; the zone
// named "wan" (covers PPPoE and other L3 devices such as pppoe-wan, whose netifd
// interface names the underlying device, not the one voipgw is given).
func FW4ZoneFor(voipIf, wan string, network, fw *uci.File) (FW4Zone, error) {
	z := FW4Zone{Name: FW4ZoneName, Device: voipIf}
	if voipIf == "" || wan == "" {
		return z, fmt.Errorf("fw4 zone: VoIP interface and WAN device are required")
	}
	zones := fwZones(fw)
	for _, s := range zones {
		if s.Name == FW4ZoneSection {
			continue
		}
		if slices.Contains(values(s, "device"), wan) {
			z.WANZone = zoneName(s)
			return z, nil
		}
	}
	var wanIfaces []string
	if network != nil {
		for _, s := range network.SectionsOfType("interface") {
			// netifd: `device` since 21.02, `ifname` before; both may name the device.
			if slices.Contains(values(s, "device"), wan) || slices.Contains(values(s, "ifname"), wan) {
				wanIfaces = append(wanIfaces, s.Name)
			}
		}
	}
	for _, s := range zones {
		if s.Name == FW4ZoneSection {
			continue
		}
		for _, n := range values(s, "network") {
			if slices.Contains(wanIfaces, n) {
				z.WANZone = zoneName(s)
				return z, nil
			}
		}
	}
	for _, s := range zones {
		if s.Name != FW4ZoneSection && zoneName(s) == "wan" {
			z.WANZone = "wan"
			return z, nil
		}
	}
	return z, fmt.Errorf("no firewall4 zone covers the WAN device %s (no zone lists it as device, none covers a network interface on it, and there is no zone named wan): add %s to the WAN zone's devices", wan, wan)
}

// fwZones are the zone sections of the firewall file, nil-safe.
func fwZones(fw *uci.File) []*uci.Section {
	if fw == nil {
		return nil
	}
	return fw.SectionsOfType("zone")
}

// values returns an option's values; fw4 (like fw3) splits plain options on spaces
// for list-like options such as `option network 'wan wan6'`.
func values(s *uci.Section, name string) []string {
	o, ok := s.Get(name)
	if !ok {
		return nil
	}
	var out []string
	for _, v := range o.Values {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func zoneName(s *uci.Section) string {
	if o, ok := s.Get("name"); ok && len(o.Values) > 0 {
		return o.Values[0]
	}
	return s.Name
}

// fw4Option is one option voipgw sets in its sections.
type fw4Option struct {
	name   string
	values []string
	list   bool
}

func (z FW4Zone) autoHelper() string {
	if z.KeepHelpers {
		return "1"
	}
	return "0"
}

// fw4Section is one of voipgw's named sections in /etc/config/firewall.
type fw4Section struct {
	name, typ string
	opts      []fw4Option
}

// sections are voipgw's sections that z wants in the firewall file; absent returns
// those of voipgw's that it wants gone.
func (z FW4Zone) sections() (want, absent []fw4Section) {
	want = []fw4Section{
		{FW4ZoneSection, "zone", []fw4Option{
			{name: "name", values: []string{z.Name}},
			{name: "device", values: []string{z.Device}, list: true},
			// ACCEPT: voipgw's input chain is the authority for what phones may ask of
			// the router (DHCP, DNS, NTP, ping); fw4 must not drop what it allows.
			{name: "input", values: []string{"ACCEPT"}},
			{name: "output", values: []string{"ACCEPT"}},
			// A zone's forward policy is for traffic within the zone; traffic to other
			// zones passes fw4 only through a forwarding (below: to WAN only) and meets
			// fw4's default forward policy otherwise, so the phones cannot reach the LAN
			// even if voipgw's table were missing.
			{name: "forward", values: []string{"REJECT"}},
			{name: "auto_helper", values: []string{z.autoHelper()}},
		}},
		{FW4ForwardingSection, "forwarding", []fw4Option{
			{name: "src", values: []string{z.Name}},
			{name: "dest", values: []string{z.WANZone}},
		}},
	}
	inbound := fw4Section{FW4InboundSection, "rule", []fw4Option{
		{name: "name", values: []string{FW4InboundName}},
		{name: "src", values: []string{z.WANZone}},
		{name: "dest", values: []string{z.Name}},
		// udp only: the full cone maps UDP, pinhole6 opens UDP ports. No family
		// (both), no ports, no addresses: which flows are mappings or pinholes,
		// and from whom, only voipgw's table knows (its sets and allowlist).
		{name: "proto", values: []string{"udp"}},
		{name: "target", values: []string{"ACCEPT"}},
	}}
	if z.Inbound {
		return append(want, inbound), nil
	}
	return want, []fw4Section{inbound}
}

// FW4Commands returns the `uci batch` commands that make fw (the current
// /etc/config/firewall, may be nil) hold the zone; none when it already does.
// Options the admin added to voipgw's sections (e.g. log) are left alone; the
// options voipgw owns are set to its values. A section of voipgw's name but of
// another type is the admin's: it is an error, never overwritten (and, where voipgw
// wants no section of that name, left alone). voipgw's inbound rule is deleted when
// z does not want it (the full cone was switched off).
func FW4Commands(z FW4Zone, fw *uci.File) ([]string, error) {
	var cmds []string
	sections, absent := z.sections()
	for _, want := range sections {
		cur := findSection(fw, want.name)
		if cur != nil && cur.Type != want.typ {
			return nil, fmt.Errorf("firewall.%s is a %s section, not voipgw's %s: rename it, voipgw needs that name", want.name, cur.Type, want.typ)
		}
		if cur == nil {
			cmds = append(cmds, fmt.Sprintf("set firewall.%s=%s", want.name, want.typ))
		}
		for _, o := range want.opts {
			var have *uci.Option
			if cur != nil {
				have, _ = cur.Get(o.name)
			}
			if have != nil && have.IsList == o.list && slices.Equal(have.Values, o.values) {
				continue
			}
			key := "firewall." + want.name + "." + o.name
			if !o.list {
				cmds = append(cmds, "set "+key+"="+uciQuote(o.values[0]))
				continue
			}
			if have != nil {
				cmds = append(cmds, "delete "+key)
			}
			for _, v := range o.values {
				cmds = append(cmds, "add_list "+key+"="+uciQuote(v))
			}
		}
	}
	for _, gone := range absent {
		if cur := findSection(fw, gone.name); cur != nil && cur.Type == gone.typ {
			cmds = append(cmds, "delete firewall."+gone.name)
		}
	}
	return cmds, nil
}

// FW4RemoveCommands returns the `uci batch` commands that delete voipgw's sections
// from fw; none when there are none. Sections of those names but another type are
// not voipgw's and stay.
func FW4RemoveCommands(fw *uci.File) []string {
	var cmds []string
	// The rule and the forwarding before the zone they name.
	for _, s := range []struct{ name, typ string }{{FW4InboundSection, "rule"}, {FW4ForwardingSection, "forwarding"}, {FW4ZoneSection, "zone"}} {
		if cur := findSection(fw, s.name); cur != nil && cur.Type == s.typ {
			cmds = append(cmds, "delete firewall."+s.name)
		}
	}
	return cmds
}

func findSection(f *uci.File, name string) *uci.Section {
	if f == nil {
		return nil
	}
	for _, s := range f.Sections {
		if !s.Anonymous && s.Name == name {
			return s
		}
	}
	return nil
}

// uciQuote quotes a value for `uci batch`, which reads the same quoting as UCI files:
// a single quote is closed, escaped and reopened.
func uciQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
