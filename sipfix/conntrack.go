package sipfix

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"github.com/ti-mo/conntrack"
	"github.com/voipgw/voipgw/nfhold"
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

// ctCount is the number of conntrack entries of the reading process's network
// namespace (a variable for tests).
var ctCount = "/proc/sys/net/netfilter/nf_conntrack_count"

// noHelperFlows says why no conntrack entry can carry the sip helper now, or ""
// if one can (then only a dump of the table tells). A dump walks the kernel's
// whole conntrack hash whatever it holds (262 144 buckets on a large host: 5-20
// ms), so apply asks these first:
//   - no entries at all in this network namespace: nothing to find;
//   - no sip helper registered: nf_conntrack_sip neither loaded nor built in
//     (Neutralise unloads it when unused) and nfnetlink_cthelper not loaded (a
//     helper from user space could be named "sip"). Unregistering a helper takes
//     it off every entry that had it (nf_conntrack_helper_unregister), so no
//     entry can carry one; a helper cannot be attached without being registered.
//
// Either is read at one moment, as the dump is: an entry created after it is
// found by neither.
func noHelperFlows() string {
	if b, err := os.ReadFile(ctCount); err == nil && strings.TrimSpace(string(b)) == "0" {
		return "no conntrack entries"
	}
	mods, err := ReadModules()
	if err != nil {
		return ""
	}
	for _, m := range mods {
		if m.Name == "nf_conntrack_sip" && m.State != "absent" {
			return ""
		}
	}
	if !moduleAbsent("nfnetlink_cthelper") {
		return ""
	}
	return "no sip helper registered (nf_conntrack_sip not loaded)"
}

// moduleAbsent: name is neither in /proc/modules nor under /sys/module (where a
// loaded module, and a built-in one with parameters, has a directory). When the
// list of modules cannot be read, it is not absent.
func moduleAbsent(name string) bool {
	if _, err := os.Stat(sysModule + "/" + name); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	b, err := os.ReadFile(procModules)
	if errors.Is(err, fs.ErrNotExist) {
		return true // a kernel without loadable modules
	}
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return false
		}
	}
	return true
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
// gone already is not an error. When no entry can carry the sip helper
// (noHelperFlows) it does not dump the table and returns skipped, the reason. Its
// ctnetlink socket is closed through the holder of ctx (package nfhold).
func DeleteHelperFlows(ctx context.Context, subnets []netip.Prefix) (n int, skipped string, err error) {
	if why := noHelperFlows(); why != "" {
		return 0, why, nil
	}
	voip, _, c, err := dumpSIPFlows(subnets)
	if err != nil {
		return 0, "", err
	}
	defer nfhold.From(ctx).Close(c)
	for _, f := range voip {
		if err := c.Delete(f); err == nil {
			n++
		}
	}
	return n, "", nil
}
