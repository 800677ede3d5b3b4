package sipfix

// A few nf_tables netlink messages spoken directly, for the one thing voipgw does
// to rules that are not its own: change a rule in place and later put it back
// byte for byte. google/nftables decodes a rule's expressions into Go types and
// silently drops the ones it has no type for, so writing back what it decoded
// could change a foreign rule. Here a rule's expression list is kept as the kernel
// sent it (one raw attribute per expression) and sent back unchanged.

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// rawExpr is one expression of a rule as the kernel encodes it (the content of an
// NFTA_LIST_ELEM: NFTA_EXPR_NAME and NFTA_EXPR_DATA).
type rawExpr struct {
	Name string
	Data []byte // NFTA_EXPR_DATA content, for decoding
	Elem []byte // the whole NFTA_LIST_ELEM content, for sending back
}

// rawRule is a rule as the kernel lists it.
type rawRule struct {
	Family   byte
	Table    string
	Chain    string
	Handle   uint64
	Exprs    []rawExpr
	UserData []byte // NFTA_RULE_USERDATA (the comment), nil when none
}

type nlConn struct{ c *netlink.Conn }

func dialNft() (*nlConn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	return &nlConn{c: c}, nil
}

func (n *nlConn) Close() error { return n.c.Close() }

func nfgen(family byte, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

func nftType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// genID is the ruleset generation; a batch that carries it fails with ERESTART
// when the ruleset changed since it was read (no lost update against fw4 reloads).
func (n *nlConn) genID() (uint32, error) {
	msgs, err := n.c.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   nfgen(unix.NFPROTO_UNSPEC, 0),
	})
	if err != nil {
		return 0, fmt.Errorf("read ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("read ruleset generation: no NFTA_GEN_ID in the answer")
}

// rules lists the rules of one table (all chains), in chain order.
func (n *nlConn) rules(family byte, table string) ([]rawRule, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_RULE_TABLE, table)
	data, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	msgs, err := n.c.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		Data:   append(nfgen(family, 0), data...),
	})
	if err != nil {
		return nil, fmt.Errorf("list rules of %s %s: %w", familyName(family), table, err)
	}
	var out []rawRule
	for _, m := range msgs {
		r, err := parseRule(m.Data)
		if err != nil {
			return nil, fmt.Errorf("parse rule of %s %s: %w", familyName(family), table, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRule(b []byte) (rawRule, error) {
	if len(b) < 4 {
		return rawRule{}, errors.New("short message")
	}
	r := rawRule{Family: b[0]}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return r, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_TABLE:
			r.Table = ad.String()
		case unix.NFTA_RULE_CHAIN:
			r.Chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			r.Handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.UserData = append([]byte(nil), ad.Bytes()...)
		case unix.NFTA_RULE_EXPRESSIONS:
			list, err := netlink.UnmarshalAttributes(ad.Bytes())
			if err != nil {
				return r, err
			}
			for _, le := range list {
				e := rawExpr{Elem: append([]byte(nil), le.Data...)}
				inner, err := netlink.UnmarshalAttributes(le.Data)
				if err != nil {
					return r, err
				}
				for _, a := range inner {
					switch a.Type &^ unix.NLA_F_NESTED {
					case unix.NFTA_EXPR_NAME:
						e.Name = string(trimNUL(a.Data))
					case unix.NFTA_EXPR_DATA:
						e.Data = a.Data
					}
				}
				r.Exprs = append(r.Exprs, e)
			}
		}
	}
	return r, ad.Err()
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// ruleOp is one change of a batch.
type ruleOp struct {
	kind     int // unix.NFT_MSG_NEWRULE or unix.NFT_MSG_DELRULE
	family   byte
	table    string
	chain    string
	handle   uint64 // REPLACE/DELETE: the rule; 0 for an insert
	position uint64 // insert: next to this rule (after it with appendTo, before it otherwise)
	appendTo bool   // insert: after position (or at the end when position is 0)
	exprs    [][]byte
	userData []byte
}

func (op ruleOp) message() (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_RULE_TABLE, op.table)
	ae.String(unix.NFTA_RULE_CHAIN, op.chain)
	flags := netlink.Request | netlink.Acknowledge
	if op.handle != 0 {
		ae.Uint64(unix.NFTA_RULE_HANDLE, op.handle)
	}
	if op.kind == unix.NFT_MSG_NEWRULE {
		if op.handle != 0 {
			flags |= netlink.Replace
		} else {
			flags |= netlink.Create
			if op.appendTo {
				flags |= netlink.Append
			}
			if op.position != 0 {
				ae.Uint64(unix.NFTA_RULE_POSITION, op.position)
			}
		}
		ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(ne *netlink.AttributeEncoder) error {
			for _, e := range op.exprs {
				ne.Bytes(unix.NLA_F_NESTED|unix.NFTA_LIST_ELEM, e)
			}
			return nil
		})
		if op.userData != nil {
			ae.Bytes(unix.NFTA_RULE_USERDATA, op.userData)
		}
	}
	data, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: nftType(op.kind), Flags: flags},
		Data:   append(nfgen(op.family, 0), data...),
	}, nil
}

// errRulesetChanged: another program changed the ruleset between read and write.
var errRulesetChanged = errors.New("the ruleset changed while voipgw worked on it")

// commit sends ops as one transaction, valid only if the ruleset is still at
// generation gen: all of them take effect or none.
func (n *nlConn) commit(gen uint32, ops []ruleOp) error {
	if len(ops) == 0 {
		return nil
	}
	begin := netlink.NewAttributeEncoder()
	begin.ByteOrder = binary.BigEndian
	begin.Uint32(unix.NFNL_BATCH_GENID, gen)
	bdata, err := begin.Encode()
	if err != nil {
		return err
	}
	msgs := []netlink.Message{{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   append(nfgen(unix.NFPROTO_UNSPEC, unix.NFNL_SUBSYS_NFTABLES), bdata...),
	}}
	for _, op := range ops {
		m, err := op.message()
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   nfgen(unix.NFPROTO_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	sent, err := n.c.SendMessages(msgs)
	if err != nil {
		return fmt.Errorf("send rule batch: %w", err)
	}
	// One acknowledgement per change; the first error is the batch's (it was aborted).
	want := 0
	for _, m := range sent {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			want++
		}
	}
	for want > 0 {
		replies, err := n.c.Receive()
		if err != nil {
			if errors.Is(err, unix.ERESTART) {
				return errRulesetChanged
			}
			return fmt.Errorf("rule batch: %w", err)
		}
		want -= len(replies)
	}
	return nil
}

func familyName(f byte) string {
	switch f {
	case unix.NFPROTO_INET:
		return "inet"
	case unix.NFPROTO_IPV4:
		return "ip"
	case unix.NFPROTO_IPV6:
		return "ip6"
	case unix.NFPROTO_BRIDGE:
		return "bridge"
	case unix.NFPROTO_NETDEV:
		return "netdev"
	case unix.NFPROTO_ARP:
		return "arp"
	}
	return fmt.Sprint(f)
}
