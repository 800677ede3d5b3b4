package sipfix

import (
	"fmt"
	"net/netip"

	"github.com/ti-mo/conntrack"
)

// Flow is a conntrack entry that carries a helper.
type Flow struct {
	Proto  uint8          `json:"proto"`
	Src    netip.AddrPort `json:"src"`
	Dst    netip.AddrPort `json:"dst"`
	Helper string         `json:"helper"`
}

func (f Flow) String() string {
	return fmt.Sprintf("proto %d %s → %s (helper %s)", f.Proto, f.Src, f.Dst, f.Helper)
}

// inVoIP: flows the phones started (original source in the VoIP subnets) or that
// were started towards them (reply source in the subnets, after a DNAT).
func inVoIP(f conntrack.Flow, subnets []netip.Prefix) bool {
	for _, p := range subnets {
		if p.Contains(f.TupleOrig.IP.SourceAddress) || p.Contains(f.TupleReply.IP.SourceAddress) {
			return true
		}
	}
	return false
}

func flowOf(f conntrack.Flow) Flow {
	return Flow{Proto: f.TupleOrig.Proto.Protocol,
		Src:    netip.AddrPortFrom(f.TupleOrig.IP.SourceAddress, f.TupleOrig.Proto.SourcePort),
		Dst:    netip.AddrPortFrom(f.TupleOrig.IP.DestinationAddress, f.TupleOrig.Proto.DestinationPort),
		Helper: f.Helper.Name}
}

func dumpSIPFlows(subnets []netip.Prefix) (voip []conntrack.Flow, other int, c *conntrack.Conn, err error) {
	c, err = conntrack.Dial(nil)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("open conntrack netlink: %w", err)
	}
	flows, err := c.Dump(nil)
	if err != nil {
		c.Close()
		return nil, 0, nil, fmt.Errorf("dump conntrack: %w", err)
	}
	for _, f := range flows {
		if f.Helper.Name != "sip" {
			continue
		}
		if inVoIP(f, subnets) {
			voip = append(voip, f)
		} else {
			other++
		}
	}
	return voip, other, c, nil
}

// HelperFlows lists the VoIP network's conntrack entries that carry the sip helper,
// and counts the others.
func HelperFlows(subnets []netip.Prefix) ([]Flow, int, error) {
	voip, other, c, err := dumpSIPFlows(subnets)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	var out []Flow
	for _, f := range voip {
		out = append(out, flowOf(f))
	}
	return out, other, nil
}

// DeleteHelperFlows deletes them (and with them the expectations the helper made),
// so the phones' next packets create entries without a helper. An entry that is
// gone already is not an error.
func DeleteHelperFlows(subnets []netip.Prefix) (int, error) {
	voip, _, c, err := dumpSIPFlows(subnets)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n := 0
	for _, f := range voip {
		if err := c.Delete(f); err == nil {
			n++
		}
	}
	return n, nil
}
