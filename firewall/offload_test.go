package firewall

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
)

// The phones' UDP flows get the voip_no_offload object on their first packet, the
// ones they start (voip_out) and the ones that come in to them (voip_in), whenever
// the table keeps state from the packet path; never otherwise.
func TestNoOffload(t *testing.T) {
	const stmt = `meta l4proto udp ct expectation set "voip_no_offload"`
	keepaliveOnly := labSpec()
	keepaliveOnly.NAT = NATSpec{Keepalive: 15 * time.Second, MediaPorts: natSpec(false).NAT.MediaPorts, MediaMax: 2048}
	for _, tc := range []struct {
		name string
		spec Spec
		want bool
	}{
		{"full cone", natSpec(false), true},
		{"keep-alive media tracking alone", keepaliveOnly, true},
		{"no packet-path state", labSpec(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := Build(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if tbl.NoOffload != tc.want {
				t.Fatalf("NoOffload %v, want %v", tbl.NoOffload, tc.want)
			}
			for chain, after := range map[string]string{"voip_out": "ct state invalid drop", "voip_in": "jump wan_scan"} {
				rs := chainRules(t, tbl, chain)
				i := slices.Index(rs, stmt)
				if !tc.want {
					if i >= 0 {
						t.Errorf("%s has %q without packet-path state", chain, stmt)
					}
					continue
				}
				if i < 1 || rs[i-1] != after {
					t.Errorf("%s: %q at %d, want right after %q:\n%s", chain, stmt, i, after, strings.Join(rs, "\n"))
				}
			}
			render, loadable := tbl.Render(), tbl.Loadable()
			if got := strings.Contains(render, "\tct expectation voip_no_offload {\n\t\tprotocol udp\n\t\tdport 9\n\t\ttimeout 1s\n\t\tsize 0\n\t\tl3proto ip\n\t}\n"); got != tc.want {
				t.Errorf("render lists the object: %v, want %v", got, tc.want)
			}
			if strings.Contains(loadable, "\tct expectation voip_no_offload {") || strings.Contains(loadable, "\t\t"+stmt+"\n") {
				t.Errorf("Loadable gives nft the object or a rule using it (nft refuses size 0)")
			}
		})
	}
}

// The object as google/nftables encodes it carries what the kernel needs: UDP,
// layer 3 ip (6.1 refuses inet), a quota of 0, and the timeout in host byte order
// (the kernel reads it with nla_get_u32; the library writes big-endian).
func TestNoOffloadObject(t *testing.T) {
	b, err := expr.MarshalExprData(1, noOffloadObj(nil).Obj)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16][]byte{}
	for ad.Next() {
		got[ad.Type()] = ad.Bytes()
	}
	want := map[uint16][]byte{
		expr.NFTA_CT_EXPECT_L3PROTO: {0, 2},
		expr.NFTA_CT_EXPECT_L4PROTO: {17},
		expr.NFTA_CT_EXPECT_DPORT:   {0, noOffloadDport},
		expr.NFTA_CT_EXPECT_TIMEOUT: binary.NativeEndian.AppendUint32(nil, noOffloadTimeout),
		expr.NFTA_CT_EXPECT_SIZE:    {0},
	}
	for typ, w := range want {
		if !bytes.Equal(got[typ], w) {
			t.Errorf("attribute %d: %x, want %x", typ, got[typ], w)
		}
	}
}
