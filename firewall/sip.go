package firewall

// SIP ALG and NAT bindings, the part of the table that is voipgw's own:
//
//   - voipgw's table never assigns a conntrack helper (no `ct helper` object, no
//     `ct helper set`); helpers that other tables attach are found and neutralised
//     by package sipfix, outside this table.
//   - Per-flow conntrack timeouts (`ct timeout` objects) hold the NAT binding of a
//     phone's SIP flow longer than its keep-alive interval without raising the
//     router-wide UDP timeouts (net.netfilter.nf_conntrack_udp_timeout*).
//
// A ct timeout is attached to a conntrack entry only while it is unconfirmed, i.e.
// on the first packet of a flow, in any chain after conntrack (priority > -200) and
// before the confirm at the end of postrouting. The rules therefore match the new
// flow's first packet in the forward hook; later packets pass through them unchanged.
//
// Both policy values are set to the configured timeout on purpose: the kernel uses
// the "replied" value only for UDP flows still active 2 s after the first reply; a
// REGISTER answered within 2 s keeps the "unreplied" value until the next packet.
// With unreplied at 30 s the binding of a phone that sends its keep-alive every
// 60 s would be gone before the first keep-alive.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/config"
)

// Names of the SIP objects in voipgw's table.
const (
	CtTimeoutSIP   = "voip_sip_udp"
	CtTimeoutRTP   = "voip_rtp_udp"
	SetSIPUDPPorts = "sip_udp_ports"
	SetRTPUDPPorts = "rtp_udp_ports"
	ChainSIPCT     = "sip_ct"
)

// SIPSpec is the SIP part of the spec.
type SIPSpec struct {
	SIPPorts   []config.PortSpan
	SIPTimeout time.Duration
	RTPPorts   []config.PortSpan
	RTPTimeout time.Duration
}

func sipSpecFromConfig(c *config.Config) SIPSpec {
	return SIPSpec{SIPPorts: c.SIP.SIPPorts, SIPTimeout: c.SIP.SIPTimeout, RTPPorts: c.SIP.RTPPorts, RTPTimeout: c.SIP.RTPTimeout}
}

// CtTimeout is a `ct timeout` object for UDP: one value for both conntrack states.
type CtTimeout struct {
	Name      string
	Unreplied time.Duration
	Replied   time.Duration
}

// nft's built-in UDP defaults; `nft list` leaves out a policy value equal to them.
const (
	nftUDPUnrepliedDefault = 30
	nftUDPRepliedDefault   = 120
)

func (o *CtTimeout) render() string {
	var pol []string
	if s := uint32(o.Unreplied / time.Second); s != nftUDPUnrepliedDefault {
		pol = append(pol, fmt.Sprintf("unreplied : %d", s))
	}
	if s := uint32(o.Replied / time.Second); s != nftUDPRepliedDefault {
		pol = append(pol, fmt.Sprintf("replied : %d", s))
	}
	policy := ""
	for i, p := range pol {
		if i > 0 {
			policy += ", "
		}
		policy += p
	}
	return fmt.Sprintf("\tct timeout %s {\n\t\tprotocol udp\n\t\tl3proto ip\n\t\tpolicy = { %s }\n\t}\n\n", o.Name, policy)
}

// nft is the object for google/nftables. Both policy keys are always given:
// google/nftables v0.3.0 fills missing keys from a package-level default map that
// its own marshalling mutates, so a missing key could inherit another object's value.
//
// l3proto ip serves IPv6 flows too: the kernel checks only the layer 4 protocol
// when it attaches the timeout (nft_ct_timeout_obj_eval).
func (o *CtTimeout) nft(t *nftables.Table) *nftables.NamedObj {
	return &nftables.NamedObj{Table: t, Name: o.Name, Type: nftables.ObjTypeCtTimeout, Obj: &expr.CtTimeout{
		L3Proto: unix.NFPROTO_IPV4, L4Proto: unix.IPPROTO_UDP,
		Policy: expr.CtStatePolicyTimeout{
			expr.CtStateUDPUNREPLIED: uint32(o.Unreplied / time.Second),
			expr.CtStateUDPREPLIED:   uint32(o.Replied / time.Second),
		},
	}}
}

// renderCtTimeouts prints the table's ct timeout objects (after the counters, as
// the kernel lists objects in the order they were added).
func (t *Table) renderCtTimeouts() string {
	s := ""
	for _, o := range t.CtTimeouts {
		s += o.render()
	}
	return s
}

func addCtTimeouts(c *nftables.Conn, nt *nftables.Table, t *Table) {
	for _, o := range t.CtTimeouts {
		c.AddObj(o.nft(nt))
	}
}

// addSIP adds the per-flow timeouts. Without ports or timeouts (a spec built by
// hand) it adds nothing.
func addSIP(t *Table, s Spec) {
	sp := s.SIP
	type class struct {
		set, obj string
		ports    []config.PortSpan
		timeout  time.Duration
		comment  string
	}
	var rules []Rule
	for _, c := range []class{
		{SetSIPUDPPorts, CtTimeoutSIP, sp.SIPPorts, sp.SIPTimeout, "UDP ports of SIP flows from the VoIP network"},
		{SetRTPUDPPorts, CtTimeoutRTP, sp.RTPPorts, sp.RTPTimeout, "UDP ports of media flows from the VoIP network"},
	} {
		if len(c.ports) == 0 || c.timeout <= 0 {
			continue
		}
		t.CtTimeouts = append(t.CtTimeouts, &CtTimeout{Name: c.obj, Unreplied: c.timeout, Replied: c.timeout})
		t.Sets = append(t.Sets, &Set{Name: c.set, Fields: []Field{nftables.TypeInetService}, Interval: true,
			Comment: c.comment, Elems: portSpanElems(c.ports)})
		rules = append(rules, rule(udpDportIn(c.set), ctTimeoutSet(c.obj)))
	}
	// The timeouts go into voip_out right after the confirmed/related/invalid rules, so
	// only a flow's first packet evaluates them: `ct timeout set` takes effect only before
	// conntrack confirms the entry anyway, and a base chain of their own cost every
	// forwarded packet a hook traversal (see BENCHMARKS.md).
	insertAfter(t, "voip_out", "ct state invalid drop", rules)
}

// insertAfter puts rules into chain right after the rule whose text is after
// (at the end if there is none).
func insertAfter(t *Table, chain, after string, rules []Rule) {
	c := chainByName(t, chain)
	if c == nil || len(rules) == 0 {
		return
	}
	at := len(c.Rules)
	for i, r := range c.Rules {
		if r.Text() == after {
			at = i + 1
			break
		}
	}
	c.Rules = slices.Concat(c.Rules[:at], rules, c.Rules[at:])
}

// udpDportIn matches `udp dport @set`.
func udpDportIn(set string) Stmt {
	exprs := l4proto(unix.IPPROTO_UDP)
	exprs = append(exprs,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: reg1, SetName: set},
	)
	return Stmt{Text: "udp dport @" + set, Exprs: exprs}
}

// ctTimeoutSet is `ct timeout set "name"`.
func ctTimeoutSet(obj string) Stmt {
	return Stmt{Text: "ct timeout set " + quote(obj), Exprs: []expr.Any{&expr.Objref{Type: int(nftables.ObjTypeCtTimeout), Name: obj}}}
}

// portSpanElems merges overlapping and adjacent spans first: the kernel rejects
// overlapping interval elements, and nft lists adjacent ones as one range.
func portSpanElems(ps []config.PortSpan) []Elem {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b config.PortSpan) int { return int(a.First) - int(b.First) })
	var merged []config.PortSpan
	for _, p := range ps {
		if n := len(merged); n > 0 && uint32(p.First) <= uint32(merged[n-1].Last)+1 {
			merged[n-1].Last = max(merged[n-1].Last, p.Last)
			continue
		}
		merged = append(merged, p)
	}
	out := make([]Elem, 0, len(merged))
	for _, p := range merged {
		out = append(out, Elem{Text: p.String(),
			Key: binary.BigEndian.AppendUint16(nil, p.First), KeyEnd: binary.BigEndian.AppendUint16(nil, p.Last)})
	}
	return out
}

// CtTimeoutValues is a ct timeout object's policy as the kernel has it, in seconds.
type CtTimeoutValues struct {
	Unreplied uint32 `json:"unreplied"`
	Replied   uint32 `json:"replied"`
}

// ReadCtTimeouts reads the named UDP ct timeout objects of the table; absent ones
// are left out. Each object is fetched and copied on its own: google/nftables
// v0.3.0 decodes every ct timeout into one shared map, so a batch read would show
// the last object's values for all of them.
func ReadCtTimeouts(table string, names ...string) (map[string]CtTimeoutValues, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer c.CloseLasting()
	nt := &nftables.Table{Name: table, Family: family()}
	out := map[string]CtTimeoutValues{}
	// Which exist: a GetObject of an absent name fails with an error that no longer
	// carries ENOENT (google/nftables formats it with %v).
	all, err := c.GetNamedObjects(nt)
	if err != nil {
		return nil, fmt.Errorf("read objects of table inet %s: %w", table, err)
	}
	present := map[string]bool{}
	for _, o := range all {
		if n, ok := o.(*nftables.NamedObj); ok && n.Type == nftables.ObjTypeCtTimeout {
			present[n.Name] = true
		}
	}
	for _, name := range names {
		if !present[name] {
			continue
		}
		o, err := c.GetObject(&nftables.NamedObj{Table: nt, Name: name, Type: nftables.ObjTypeCtTimeout})
		if err != nil {
			return nil, fmt.Errorf("read ct timeout %s: %w", name, err)
		}
		n, ok := o.(*nftables.NamedObj)
		if !ok {
			continue
		}
		if ct, ok := n.Obj.(*expr.CtTimeout); ok {
			out[name] = CtTimeoutValues{Unreplied: ct.Policy[expr.CtStateUDPUNREPLIED], Replied: ct.Policy[expr.CtStateUDPREPLIED]}
		}
	}
	return out, nil
}
