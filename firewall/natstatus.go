package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
)

// Mapping is one live full-cone mapping as the kernel has it.
type Mapping struct {
	Internal netip.AddrPort `json:"internal"`
	External uint16         `json:"external_port"`
	Expires  time.Duration  `json:"expires"`
	// Reachable says whether nat_in4 sends the external port back to this endpoint;
	// false is a conflict (another endpoint holds the port inbound).
	Reachable bool `json:"reachable"`
}

// NATStatus is the full cone's state read back from the kernel.
type NATStatus struct {
	Present   bool             `json:"present"`
	Mappings  []Mapping        `json:"mappings"`
	Inbound   int              `json:"inbound_entries"`
	Pinholes  []netip.AddrPort `json:"pinholes6,omitempty"`
	Conflicts int              `json:"conflicts"`
	MediaOut  int              `json:"media_flows_active"`
}

// ReadNAT reads voipgw's NAT maps. Without them (nat disabled) Present is false.
func ReadNAT(table string) (NATStatus, error) {
	st := NATStatus{Mappings: []Mapping{}}
	c, err := nftables.New()
	if err != nil {
		return st, fmt.Errorf("open nftables netlink: %w", err)
	}
	defer c.CloseLasting()
	nt := &nftables.Table{Name: table, Family: family()}
	get := func(name string) ([]nftables.SetElement, bool, error) {
		s, err := c.GetSetByName(nt, name)
		if err != nil {
			return nil, false, nil // absent
		}
		e, err := c.GetSetElements(s)
		if err != nil {
			return nil, true, fmt.Errorf("read %s: %w", name, err)
		}
		return e, true, nil
	}
	out, ok, err := get(SetNATOut4)
	if err != nil || !ok {
		return st, err
	}
	st.Present = true
	in, _, err := get(SetNATIn4)
	if err != nil {
		return st, err
	}
	st.Inbound = len(in)
	back := map[uint16]netip.AddrPort{}
	for _, e := range in {
		if len(e.Key) < 2 {
			continue
		}
		if ap, err := ParseEndpoint(e.Val); err == nil {
			back[binary.BigEndian.Uint16(e.Key)] = ap
		}
	}
	for _, e := range out {
		ap, err := ParseEndpoint(e.Key)
		if err != nil || len(e.Val) < 2 {
			continue
		}
		m := Mapping{Internal: ap, External: binary.BigEndian.Uint16(e.Val), Expires: e.Expires}
		m.Reachable = back[m.External] == ap
		if !m.Reachable {
			st.Conflicts++
		}
		st.Mappings = append(st.Mappings, m)
	}
	slices.SortFunc(st.Mappings, func(a, b Mapping) int { return a.Internal.Compare(b.Internal) })
	ph, _, err := get(SetPinhole6)
	if err != nil {
		return st, err
	}
	for _, e := range ph {
		if ap, err := ParseEndpoint(e.Key); err == nil {
			st.Pinholes = append(st.Pinholes, ap)
		}
	}
	for _, name := range []string{SetMediaOut4, SetMediaOut6} {
		m, _, err := get(name)
		if err != nil {
			return st, err
		}
		st.MediaOut += len(m)
	}
	return st, nil
}
