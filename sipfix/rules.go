package sipfix

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/voipgw/voipgw/nfhold"

	"golang.org/x/sys/unix"
)

// RuleChange is what voipgw did to a foreign rule, recorded so that down puts back
// exactly that rule. Original is the rule's expression list as the kernel had it
// (raw netlink, one element per expression).
type RuleChange struct {
	Family   string   `json:"family"`
	Table    string   `json:"table"`
	Chain    string   `json:"chain"`
	Handle   uint64   `json:"handle"` // narrowed: the rule (unchanged by a replace); deleted: the old handle
	Action   string   `json:"action"` // ActionNarrow or ActionDelete
	Ifname   string   `json:"ifname"` // the excluded VoIP interface (narrowed)
	Via      string   `json:"via"`
	Original [][]byte `json:"original"`
	UserData []byte   `json:"userdata,omitempty"`
	Prev     uint64   `json:"prev,omitempty"` // deleted: the rule before it (0: it was first)
	Next     uint64   `json:"next,omitempty"` // deleted: the rule after it (0: it was last)
}

func (c RuleChange) String() string {
	return fmt.Sprintf("%s %s chain %s handle %d (%s)", c.Family, c.Table, c.Chain, c.Handle, c.Via)
}

// NeutraliseRules makes every foreign rule that attaches the sip helper not act on
// traffic from ifname, in one transaction. prev is the previous apply's record:
// changes still in place are kept, those for another interface are undone first.
// skip is voipgw's own table.
func NeutraliseRules(ctx context.Context, log *slog.Logger, ifname, skip string, prev []RuleChange) ([]RuleChange, error) {
	var keep, undo []RuleChange
	for _, c := range prev {
		if c.Action == ActionNarrow && c.Ifname != ifname {
			undo = append(undo, c)
		} else {
			keep = append(keep, c)
		}
	}
	if len(undo) > 0 {
		if err := RestoreRules(ctx, log, undo); err != nil {
			return prev, err
		}
	}
	var err error
	for try := 0; try < 3; try++ {
		var out []RuleChange
		out, err = neutraliseOnce(nfhold.From(ctx), ifname, skip, keep)
		if !errors.Is(err, errRulesetChanged) {
			if err == nil {
				for _, c := range out {
					if !slices.ContainsFunc(keep, func(k RuleChange) bool { return k.Handle == c.Handle && k.Table == c.Table }) {
						log.Info("sip: neutralised a foreign rule that attaches the sip helper", "rule", c.String(), "action", c.Action)
					}
				}
			}
			return out, err
		}
	}
	return keep, err
}

func neutraliseOnce(h *nfhold.Holder, ifname, skip string, keep []RuleChange) ([]RuleChange, error) {
	n, err := dialNft()
	if err != nil {
		return keep, err
	}
	defer h.Close(n)
	gen, err := n.genID()
	if err != nil {
		return keep, err
	}
	tables, err := readTables(h, n, skip)
	if err != nil {
		return keep, err
	}
	var out []RuleChange
	// Recorded changes: narrowed rules still carrying the exclusion stay recorded; a
	// deleted rule stays recorded while its chain exists (down re-inserts it). A rule
	// that is gone was rebuilt by its owner (fw4 reload): its new form is found below.
	for _, c := range keep {
		r, inChain, found := findRule(tables, c.Family, c.Table, c.Chain, c.Handle)
		switch {
		case c.Action == ActionNarrow && found && excludedIf(r) == ifname:
			out = append(out, c)
		case c.Action == ActionDelete && inChain != nil && !found:
			out = append(out, c)
		}
	}
	excl, err := exclusion(ifname)
	if err != nil {
		return keep, err
	}
	var ops []ruleOp
	for _, f := range analyse(tables, ifname) {
		if f.Neutralised || f.Action == ActionNone {
			continue
		}
		fam, _ := familyByName(f.Family)
		r, inChain, _ := findRule(tables, f.Family, f.Table, f.Chain, f.Handle)
		c := RuleChange{Family: f.Family, Table: f.Table, Chain: f.Chain, Handle: f.Handle, Action: f.Action,
			Ifname: ifname, Via: f.Via, Original: elems(r), UserData: r.UserData}
		switch f.Action {
		case ActionNarrow:
			ops = append(ops, ruleOp{kind: unix.NFT_MSG_NEWRULE, family: fam, table: f.Table, chain: f.Chain,
				handle: f.Handle, exprs: append(append([][]byte{}, excl...), c.Original...), userData: r.UserData})
		case ActionDelete:
			for i, x := range inChain {
				if x.Handle != f.Handle {
					continue
				}
				if i > 0 {
					c.Prev = inChain[i-1].Handle
				}
				if i+1 < len(inChain) {
					c.Next = inChain[i+1].Handle
				}
			}
			ops = append(ops, ruleOp{kind: unix.NFT_MSG_DELRULE, family: fam, table: f.Table, chain: f.Chain, handle: f.Handle})
		}
		out = append(out, c)
	}
	if err := n.commit(gen, ops); err != nil {
		return keep, fmt.Errorf("neutralise sip helper rules: %w", err)
	}
	return out, nil
}

// RestoreRules puts back the recorded rules, in one transaction: a narrowed rule
// gets its original expressions again (if it still carries voipgw's exclusion and
// is otherwise unchanged); a deleted rule is inserted again next to its old
// neighbours. Rules their owner changed or removed in the meantime are left alone
// and logged: the owner's current version wins.
func RestoreRules(ctx context.Context, log *slog.Logger, changes []RuleChange) error {
	if len(changes) == 0 {
		return nil
	}
	var err error
	for try := 0; try < 3; try++ {
		if err = restoreOnce(log, changes); !errors.Is(err, errRulesetChanged) {
			return err
		}
	}
	return err
}

func restoreOnce(log *slog.Logger, changes []RuleChange) error {
	n, err := dialNft()
	if err != nil {
		return err
	}
	defer n.Close()
	gen, err := n.genID()
	if err != nil {
		return err
	}
	tables, err := readTables(nil, n, "")
	if err != nil {
		return err
	}
	var ops []ruleOp
	for _, c := range changes {
		fam, err := familyByName(c.Family)
		if err != nil {
			return err
		}
		r, inChain, found := findRule(tables, c.Family, c.Table, c.Chain, c.Handle)
		switch c.Action {
		case ActionNarrow:
			if !found {
				log.Info("sip: rule to restore is gone (rebuilt by its owner); nothing to do", "rule", c.String())
				continue
			}
			if excludedIf(r) != c.Ifname || !equalElems(elems(r)[2:], c.Original) {
				log.Warn("sip: rule was changed by someone else since apply; left as it is", "rule", c.String())
				continue
			}
			ops = append(ops, ruleOp{kind: unix.NFT_MSG_NEWRULE, family: fam, table: c.Table, chain: c.Chain,
				handle: c.Handle, exprs: c.Original, userData: r.UserData})
		case ActionDelete:
			if inChain == nil {
				log.Info("sip: chain of the deleted rule is gone; nothing to re-insert", "rule", c.String())
				continue
			}
			dup := false
			for _, x := range inChain {
				dup = dup || equalElems(elems(x), c.Original)
			}
			if dup {
				log.Info("sip: the deleted rule is back already (its owner re-created it)", "rule", c.String())
				continue
			}
			op := ruleOp{kind: unix.NFT_MSG_NEWRULE, family: fam, table: c.Table, chain: c.Chain,
				exprs: c.Original, userData: c.UserData}
			has := func(h uint64) bool {
				for _, x := range inChain {
					if x.Handle == h {
						return true
					}
				}
				return false
			}
			switch {
			case c.Next != 0 && has(c.Next):
				op.position = c.Next // insert before the rule that followed it
			case c.Prev != 0 && has(c.Prev):
				op.position, op.appendTo = c.Prev, true // after the rule that preceded it
			case c.Prev == 0:
				// it was first: insert at the head (no position, no append)
			default:
				op.appendTo = true
			}
			ops = append(ops, op)
		}
	}
	if err := n.commit(gen, ops); err != nil {
		return fmt.Errorf("restore sip helper rules: %w", err)
	}
	return nil
}

// StripExclusions removes voipgw's exclusion of ifname from every rule that attaches
// the sip helper: down's fallback when the record of the apply is lost.
func StripExclusions(ctx context.Context, log *slog.Logger, ifname string) (int, error) {
	n, err := dialNft()
	if err != nil {
		return 0, err
	}
	defer n.Close()
	gen, err := n.genID()
	if err != nil {
		return 0, err
	}
	tables, err := readTables(nil, n, "")
	if err != nil {
		return 0, err
	}
	var ops []ruleOp
	for _, f := range analyse(tables, ifname) {
		if !f.Neutralised {
			continue
		}
		fam, _ := familyByName(f.Family)
		r, _, _ := findRule(tables, f.Family, f.Table, f.Chain, f.Handle)
		ops = append(ops, ruleOp{kind: unix.NFT_MSG_NEWRULE, family: fam, table: f.Table, chain: f.Chain,
			handle: f.Handle, exprs: elems(r)[2:], userData: r.UserData})
		log.Info("sip: removing voipgw's exclusion from a foreign rule", "rule", f.String())
	}
	return len(ops), n.commit(gen, ops)
}
