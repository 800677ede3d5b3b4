package sipfix

// nftables rules of other tables that attach the sip conntrack helper.
//
// Since Linux 6.0 a helper is attached only by an explicit rule: an nft `ct helper
// set` that names a ct helper object of type "sip" (firewall4 writes one per zone:
// `meta l4proto udp udp dport 5060 ct helper set "sip"`), or an iptables
// `-j CT --helper sip`, which iptables-nft stores as an nft rule with an xt target.
//
// Why voipgw changes the foreign rule instead of overriding it in its own table:
// the kernel attaches a helper only to an unconfirmed conntrack entry and only when
// it has none yet (nft_ct_helper_obj_eval tests IPS_HELPER), and there is no "no
// helper" helper; a `notrack` would also switch off the NAT the phones need. Nothing
// in voipgw's own table can stop another table's `ct helper set` from acting.
//
// So the rule is made not to match the VoIP network, with the smallest change that
// does it: voipgw puts `iifname != "<voip>"` in front of its expressions (replaced in
// place: same handle, same position, its own expressions and comment untouched). That
// is correct where the rule only ever sees packets whose input interface is known:
// chains reached from the prerouting, input, forward and output hooks (in output
// iifname is empty, so the rule stays as it was for the router's own traffic). A rule
// reached from postrouting, where iifname is empty for forwarded packets too, cannot
// be narrowed this way; it is deleted and `down` inserts it again at its place.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/nfhold"
)

// Actions on a foreign rule.
const (
	ActionNarrow = "narrow" // prefix iifname != VoIP interface
	ActionDelete = "delete" // remove (re-inserted by down)
	ActionNone   = "none"   // the rule never sees the VoIP network's traffic
)

// Rule is a rule of another table that attaches the sip helper.
type Rule struct {
	Family string   `json:"family"`
	Table  string   `json:"table"`
	Chain  string   `json:"chain"`
	Handle uint64   `json:"handle"`
	Via    string   `json:"via"`   // `ct helper set "sip"` or `CT --helper sip` (iptables-nft)
	Hooks  []string `json:"hooks"` // base-chain hooks from which the rule is reached
	// Neutralised is true when the rule already carries voipgw's exclusion of the
	// VoIP interface.
	Neutralised bool   `json:"neutralised"`
	Action      string `json:"action"` // what apply does (or did) with it
}

func (r Rule) String() string {
	return fmt.Sprintf("%s %s chain %s handle %d (%s)", r.Family, r.Table, r.Chain, r.Handle, r.Via)
}

// snapTable is what the analysis needs of one table.
type snapTable struct {
	Family     byte
	Name       string
	BaseHooks  map[string]string // chain → hook name, base chains only
	SIPHelpers map[string]bool   // ct helper objects of type sip, by object name
	Rules      []rawRule
}

var hookNames = map[nftables.ChainHook]string{
	*nftables.ChainHookPrerouting: "prerouting", *nftables.ChainHookInput: "input",
	*nftables.ChainHookForward: "forward", *nftables.ChainHookOutput: "output",
	*nftables.ChainHookPostrouting: "postrouting",
}

// readTables reads every ip, ip6 and inet table except skip (voipgw's own). Its
// google/nftables socket is one for all requests (a Conn that is not lasting opens
// and closes one per request) and is closed through h (package nfhold).
func readTables(h *nfhold.Holder, n *nlConn, skip string) ([]snapTable, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer h.Close(nfhold.Func(c.CloseLasting))
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []snapTable
	for _, t := range tables {
		fam := byte(t.Family)
		if fam != unix.NFPROTO_INET && fam != unix.NFPROTO_IPV4 && fam != unix.NFPROTO_IPV6 {
			continue // conntrack helpers are not set from bridge, netdev or arp tables
		}
		if fam == unix.NFPROTO_INET && t.Name == skip {
			continue
		}
		st := snapTable{Family: fam, Name: t.Name, BaseHooks: map[string]string{}, SIPHelpers: map[string]bool{}}
		for _, ch := range chains {
			if ch.Table.Name == t.Name && ch.Table.Family == t.Family && ch.Hooknum != nil {
				st.BaseHooks[ch.Name] = hookNames[*ch.Hooknum]
			}
		}
		objs, err := c.GetNamedObjects(t)
		if err != nil {
			return nil, fmt.Errorf("list objects of %s %s: %w", familyName(fam), t.Name, err)
		}
		for _, o := range objs {
			if no, ok := o.(*nftables.NamedObj); ok && no.Type == nftables.ObjTypeCtHelper {
				if h, ok := no.Obj.(*expr.CtHelper); ok && h.Name == "sip" {
					st.SIPHelpers[no.Name] = true
				}
			}
		}
		if st.Rules, err = n.rules(fam, t.Name); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// attachesSIP tells whether a rule sets the sip helper, and how.
func attachesSIP(t *snapTable, r rawRule) (string, bool) {
	for _, e := range r.Exprs {
		switch e.Name {
		case "objref":
			typ, name, set := decodeObjref(e.Data)
			if typ != unix.NFT_OBJECT_CT_HELPER {
				continue
			}
			if set != "" && len(t.SIPHelpers) > 0 {
				// `ct helper set … map @m`: which helper depends on the packet; with a sip
				// helper object in the table, count it as one that can attach it.
				return fmt.Sprintf("ct helper set map @%s", set), true
			}
			if t.SIPHelpers[name] {
				return fmt.Sprintf("ct helper set %q", name), true
			}
		case "target":
			name, info := decodeTarget(e.Data)
			// struct xt_ct_target_info(_v1): flags u16, zone u16, ct_events u32,
			// exp_events u32, helper[16] — the same prefix in every revision.
			if name == "CT" && len(info) >= 28 && string(trimNUL(info[12:28])) == "sip" {
				return "CT --helper sip (iptables)", true
			}
		}
	}
	return "", false
}

func decodeObjref(b []byte) (typ uint32, name, set string) {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return 0, "", ""
	}
	for _, a := range attrs {
		switch a.Type &^ unix.NLA_F_NESTED {
		case unix.NFTA_OBJREF_IMM_TYPE:
			if len(a.Data) == 4 {
				typ = binary.BigEndian.Uint32(a.Data)
			}
		case unix.NFTA_OBJREF_IMM_NAME:
			name = string(trimNUL(a.Data))
		case unix.NFTA_OBJREF_SET_NAME:
			set = string(trimNUL(a.Data))
			typ = unix.NFT_OBJECT_CT_HELPER // a map's object type is its data type; only helper maps matter here
		}
	}
	return typ, name, set
}

func decodeTarget(b []byte) (string, []byte) {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return "", nil
	}
	var name string
	var info []byte
	for _, a := range attrs {
		switch a.Type &^ unix.NLA_F_NESTED {
		case unix.NFTA_TARGET_NAME:
			name = string(trimNUL(a.Data))
		case unix.NFTA_TARGET_INFO:
			info = a.Data
		}
	}
	return name, info
}

// jumpTarget returns the chain of a jump or goto verdict expression.
func jumpTarget(e rawExpr) string {
	if e.Name != "immediate" {
		return ""
	}
	var v expr.Verdict
	if err := expr.Unmarshal(unix.NFPROTO_INET, e.Data, &v); err != nil {
		return ""
	}
	if v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto {
		return v.Chain
	}
	return ""
}

// reachingHooks lists the hooks of the base chains from which chain is reached by
// jumps and gotos. A chain reached otherwise (through a verdict map) gets the
// hooks of every base chain of the table: the safe assumption.
func reachingHooks(t *snapTable, chain string) []string {
	callers := map[string][]string{}
	for _, r := range t.Rules {
		for _, e := range r.Exprs {
			if to := jumpTarget(e); to != "" {
				callers[to] = append(callers[to], r.Chain)
			}
		}
	}
	hooks := map[string]bool{}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(c string) {
		if seen[c] {
			return
		}
		seen[c] = true
		if h, ok := t.BaseHooks[c]; ok {
			hooks[h] = true
		}
		for _, from := range callers[c] {
			walk(from)
		}
	}
	walk(chain)
	if len(hooks) == 0 {
		for _, h := range t.BaseHooks {
			hooks[h] = true
		}
	}
	var out []string
	for h := range hooks {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// exclusion is voipgw's prefix: `iifname != "<ifname>"`, as netlink list elements.
func exclusion(ifname string) ([][]byte, error) {
	name := make([]byte, 16)
	copy(name, ifname)
	var out [][]byte
	for _, e := range []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: name},
	} {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// excludedIf returns the interface a rule's voipgw prefix excludes, or "".
func excludedIf(r rawRule) string {
	if len(r.Exprs) < 3 || r.Exprs[0].Name != "meta" || r.Exprs[1].Name != "cmp" {
		return ""
	}
	var m expr.Meta
	var c expr.Cmp
	if expr.Unmarshal(r.Family, r.Exprs[0].Data, &m) != nil || expr.Unmarshal(r.Family, r.Exprs[1].Data, &c) != nil {
		return ""
	}
	if m.Key != expr.MetaKeyIIFNAME || c.Op != expr.CmpOpNeq || m.Register != c.Register || len(c.Data) != 16 {
		return ""
	}
	return string(trimNUL(c.Data))
}

// analyse finds the rules that attach the sip helper and decides, for the VoIP
// interface ifname, what apply does with each. It is pure.
func analyse(tables []snapTable, ifname string) []Rule {
	var out []Rule
	for i := range tables {
		t := &tables[i]
		for _, r := range t.Rules {
			via, ok := attachesSIP(t, r)
			if !ok {
				continue
			}
			f := Rule{Family: familyName(t.Family), Table: t.Name, Chain: r.Chain, Handle: r.Handle, Via: via,
				Hooks: reachingHooks(t, r.Chain)}
			f.Neutralised = ifname != "" && excludedIf(r) == ifname
			switch {
			case len(f.Hooks) == 0 || slices.Equal(f.Hooks, []string{"output"}):
				f.Action = ActionNone // only the router's own traffic (or unreachable)
			case slices.Contains(f.Hooks, "postrouting"):
				f.Action = ActionDelete
			default:
				f.Action = ActionNarrow
			}
			out = append(out, f)
		}
	}
	return out
}

// findRule returns the rule with that handle.
func findRule(tables []snapTable, family, table, chain string, handle uint64) (rawRule, []rawRule, bool) {
	for _, t := range tables {
		if familyName(t.Family) != family || t.Name != table {
			continue
		}
		var inChain []rawRule
		for _, r := range t.Rules {
			if r.Chain == chain {
				inChain = append(inChain, r)
			}
		}
		for _, r := range inChain {
			if r.Handle == handle {
				return r, inChain, true
			}
		}
		return rawRule{}, inChain, false
	}
	return rawRule{}, nil, false
}

func familyByName(s string) (byte, error) {
	for _, f := range []byte{unix.NFPROTO_INET, unix.NFPROTO_IPV4, unix.NFPROTO_IPV6} {
		if familyName(f) == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown table family %q", s)
}

func elems(r rawRule) [][]byte {
	out := make([][]byte, len(r.Exprs))
	for i, e := range r.Exprs {
		out[i] = e.Elem
	}
	return out
}

func equalElems(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, func(x, y []byte) bool { return string(x) == string(y) })
}

func describeHooks(h []string) string { return strings.Join(h, ",") }
