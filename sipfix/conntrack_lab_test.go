package sipfix_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/nfhold"
	"github.com/voipgw/voipgw/sipfix"
)

// The dump is skipped in a namespace without conntrack entries, and not once an
// entry with the sip helper exists there: that entry is deleted, others are not.
// The helper is attached as a router's rules would, by a ct helper object of type
// sip, to a UDP flow from the VoIP subnet.
func TestDeleteHelperFlowsSkipsOnlyWhenNothingToFind(t *testing.T) {
	ns := lab.TestNS(t, "ctskip")
	voip := netip.MustParsePrefix("192.0.2.0/24")
	sh := func(script string) {
		t.Helper()
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh("ip link set lo up && ip addr add 192.0.2.10/24 dev lo && ip addr add 198.51.100.10/24 dev lo")
	err := ns.Do(func() error {
		n, skipped, err := sipfix.DeleteHelperFlows(context.Background(), []netip.Prefix{voip})
		if err != nil {
			return err
		}
		if skipped == "" || n != 0 {
			t.Errorf("no conntrack entries: deleted %d, skipped %q; want the dump skipped", n, skipped)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	nftIn := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	nftIn.Stdin = strings.NewReader(`table inet cttest {
	ct helper sipobj { type "sip" protocol udp; }
	chain out {
		type filter hook output priority 0;
		udp dport 5060 ip saddr 192.0.2.0/24 ct helper set "sipobj"
	}
}
`)
	if out, err := nftIn.CombinedOutput(); err != nil {
		t.Skipf("cannot attach the sip helper here (%v: %s): nf_conntrack_sip not available", err, out)
	}
	err = ns.Do(func() error {
		for _, src := range []string{"192.0.2.10:5060", "198.51.100.10:5060"} {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.20:5060")))
			if err != nil {
				return err
			}
			c.Write([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
			c.Close()
		}
		ct, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer ct.Close()
		before, err := ct.Dump(nil)
		if err != nil {
			return err
		}
		withHelper := 0
		for _, f := range before {
			if f.Helper.Name == "sip" && f.TupleOrig.Proto.Protocol == unix.IPPROTO_UDP {
				withHelper++
			}
		}
		if withHelper != 1 || len(before) != 2 {
			return fmt.Errorf("setup: %d entries, %d with the sip helper; want 2 and 1", len(before), withHelper)
		}
		h := &nfhold.Holder{}
		n, skipped, err := sipfix.DeleteHelperFlows(nfhold.With(context.Background(), h), []netip.Prefix{voip})
		if err != nil {
			return err
		}
		if skipped != "" || n != 1 {
			t.Errorf("with an entry carrying the sip helper: deleted %d, skipped %q; want 1 deleted", n, skipped)
		}
		if err := h.Release(); err != nil {
			return err
		}
		after, err := ct.Dump(nil)
		if err != nil {
			return err
		}
		for _, f := range after {
			if f.Helper.Name != "" {
				t.Errorf("entry %v still carries helper %q", f.TupleOrig, f.Helper.Name)
			}
		}
		if len(after) != 1 {
			t.Errorf("%d entries left, want the one without helper", len(after))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
