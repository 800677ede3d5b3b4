package vlan

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestValidate(t *testing.T) {
	v4 := pfx("192.0.2.1/25")
	both := pfx("192.0.2.1/25", "2001:db8:20::1/64")
	tests := []struct {
		name string
		d    Desired
		want []string // substrings of the error; none: valid
	}{
		{"dedicated port", Desired{Name: "voice", Addrs: both}, nil},
		{"dedicated port ipv4 only", Desired{Name: "eth1", Addrs: v4}, nil},
		{"vlan on port", Desired{Name: "lan4.20", Parent: "lan4", VID: 20, Addrs: both}, nil},
		{"dsa bridge", Desired{Name: "br-lan.20", Parent: "br-lan", VID: 20, AccessPorts: []string{"lan3", "lan4"}, Addrs: v4}, nil},
		{"vid 1", Desired{Name: "v1", Parent: "eth0", VID: 1, Addrs: v4}, nil},
		{"vid 4094", Desired{Name: "v4094", Parent: "eth0", VID: 4094, Addrs: v4}, nil},
		{"15 chars", Desired{Name: "abcdefghijklmno", Addrs: v4}, nil},
		{"ipv6 /127", Desired{Name: "voice", Addrs: pfx("192.0.2.1/30", "2001:db8::1/127")}, nil},
		{"ipv4 /30", Desired{Name: "voice", Addrs: pfx("192.0.2.2/30")}, nil},

		{"empty name", Desired{Addrs: v4}, []string{"interface name is empty"}},
		{"16 chars", Desired{Name: "abcdefghijklmnop", Addrs: v4}, []string{"16 characters", "at most 15"}},
		{"space", Desired{Name: "my voice", Addrs: v4}, []string{`"my voice"`, "not allowed"}},
		{"slash", Desired{Name: "a/b", Addrs: v4}, []string{"not allowed"}},
		{"colon", Desired{Name: "eth0:1", Addrs: v4}, []string{"not allowed"}},
		{"dot", Desired{Name: ".", Addrs: v4}, []string{"not a valid interface name"}},
		{"all", Desired{Name: "all", Addrs: v4}, []string{`"all" cannot be the VoIP interface`}},
		{"default", Desired{Name: "default", Addrs: v4}, []string{`"default" cannot be`}},
		{"loopback device", Desired{Name: "lo", Addrs: v4}, []string{`"lo" cannot be`}},
		{"dotdot", Desired{Name: "..", Addrs: v4}, []string{"not a valid interface name"}},
		{"non-ascii", Desired{Name: "vöice", Addrs: v4}, []string{"not allowed"}},
		{"vid negative", Desired{Name: "v", Parent: "eth0", VID: -1, Addrs: v4}, []string{"vlan id -1 out of range"}},
		{"vid 4095", Desired{Name: "v", Parent: "eth0", VID: 4095, Addrs: v4}, []string{"vlan id 4095 out of range"}},
		{"vid without parent", Desired{Name: "v", VID: 20, Addrs: v4}, []string{"vlan id 20 needs a parent"}},
		{"parent without vid", Desired{Name: "v", Parent: "eth0", Addrs: v4}, []string{`parent "eth0" given without a vlan id`}},
		{"parent is itself", Desired{Name: "eth0", Parent: "eth0", VID: 20, Addrs: v4}, []string{"its own parent"}},
		{"bad parent name", Desired{Name: "v", Parent: "a parent", VID: 20, Addrs: v4}, []string{"parent", "not allowed"}},
		{"access ports without vid", Desired{Name: "voice", AccessPorts: []string{"lan4"}, Addrs: v4}, []string{"access ports [lan4] need a vlan id"}},
		{"access port twice", Desired{Name: "br-lan.20", Parent: "br-lan", VID: 20, AccessPorts: []string{"lan4", "lan4"}, Addrs: v4}, []string{"access port lan4 listed twice"}},
		{"access port is bridge", Desired{Name: "br-lan.20", Parent: "br-lan", VID: 20, AccessPorts: []string{"br-lan"}, Addrs: v4}, []string{"access port br-lan must be a port"}},
		{"access port bad name", Desired{Name: "br-lan.20", Parent: "br-lan", VID: 20, AccessPorts: []string{""}, Addrs: v4}, []string{"access port is empty"}},
		{"no address", Desired{Name: "voice"}, []string{"voice needs an IPv4 gateway address"}},
		{"ipv6 only", Desired{Name: "voice", Addrs: pfx("2001:db8:20::1/64")}, []string{"needs an IPv4 gateway address"}},
		{"two ipv4", Desired{Name: "voice", Addrs: pfx("192.0.2.1/25", "198.51.100.1/24")}, []string{"more than one IPv4"}},
		{"same ipv4 twice", Desired{Name: "voice", Addrs: pfx("192.0.2.1/25", "192.0.2.1/25")}, []string{"more than one IPv4"}},
		{"two ipv6", Desired{Name: "voice", Addrs: pfx("192.0.2.1/25", "2001:db8:20::1/64", "2001:db8:21::1/64")}, []string{"more than one IPv6"}},
		{"network address", Desired{Name: "voice", Addrs: pfx("192.0.2.0/25")}, []string{"192.0.2.0/25 is the network address"}},
		{"broadcast address", Desired{Name: "voice", Addrs: pfx("192.0.2.127/25")}, []string{"192.0.2.127/25 is the broadcast address of 192.0.2.0/25"}},
		{"ipv4 /31", Desired{Name: "voice", Addrs: pfx("192.0.2.1/31")}, []string{"no room for phones"}},
		{"ipv4 /32", Desired{Name: "voice", Addrs: pfx("192.0.2.1/32")}, []string{"no room for phones"}},
		{"ipv6 /128", Desired{Name: "voice", Addrs: pfx("192.0.2.1/25", "2001:db8::1/128")}, []string{"no room for phones"}},
		{"prefix length 0", Desired{Name: "voice", Addrs: pfx("192.0.2.1/0")}, []string{"prefix length 0"}},
		{"unspecified", Desired{Name: "voice", Addrs: pfx("0.0.0.0/8")}, []string{"not a usable unicast"}},
		{"loopback", Desired{Name: "voice", Addrs: pfx("127.0.0.1/8")}, []string{"not a usable unicast"}},
		{"multicast", Desired{Name: "voice", Addrs: pfx("224.0.0.1/24")}, []string{"not a usable unicast"}},
		{"class e", Desired{Name: "voice", Addrs: pfx("240.0.0.1/8")}, []string{"not a usable unicast"}},
		{"limited broadcast", Desired{Name: "voice", Addrs: pfx("255.255.255.255/8")}, []string{"not a usable unicast"}},
		{"ipv4 link-local", Desired{Name: "voice", Addrs: pfx("169.254.1.1/16")}, []string{"not a usable unicast"}},
		{"ipv6 link-local", Desired{Name: "voice", Addrs: pfx("192.0.2.1/25", "fe80::1/64")}, []string{"fe80::1/64 is not a usable unicast"}},
		{"ipv6 subnet-router anycast", Desired{Name: "voice", Addrs: pfx("192.0.2.1/25", "2001:db8:20::/64")}, []string{"Subnet-Router anycast"}},
		{"ipv4-mapped", Desired{Name: "voice", Addrs: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("::ffff:192.0.2.1"), 120)}}, []string{"IPv4-mapped"}},
		{"zero prefix", Desired{Name: "voice", Addrs: []netip.Prefix{{}}}, []string{"invalid gateway address"}},
		{"everything reported", Desired{Name: "", VID: 5000, Addrs: pfx("192.0.2.0/25")}, []string{"interface name is empty", "vlan id 5000", "network address"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.d.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tc.d, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want error with %q", tc.d, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate(%+v) = %q, want it to contain %q", tc.d, err, w)
				}
			}
		})
	}
}

func TestBroadcast4(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1/25":    "192.0.2.127",
		"192.0.2.130/25":  "192.0.2.255",
		"198.51.100.9/24": "198.51.100.255",
		"10.1.2.3/8":      "10.255.255.255",
		"203.0.113.5/30":  "203.0.113.7",
	} {
		if got := broadcast4(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("broadcast4(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestSysctlNames(t *testing.T) {
	if got, want := ifSysctl("ipv6", "lan4.20", "accept_ra"), "net.ipv6.conf.lan4/20.accept_ra"; got != want {
		t.Errorf("ifSysctl = %q, want %q", got, want)
	}
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":             "/proc/sys/net/ipv4/ip_forward",
		"net.ipv6.conf.all.forwarding":    "/proc/sys/net/ipv6/conf/all/forwarding",
		"net.ipv6.conf.lan4/20.accept_ra": "/proc/sys/net/ipv6/conf/lan4.20/accept_ra",
		"net.ipv6.conf.br-lan.forwarding": "/proc/sys/net/ipv6/conf/br-lan/forwarding",
	} {
		if got := sysctlPath(key); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestWantedSysctls(t *testing.T) {
	got := wantedSysctls(Desired{Name: "lan4.20", Addrs: pfx("192.0.2.1/25")})
	if want := []sysctlWant{{"net.ipv4.ip_forward", "1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("ipv4 only: %v, want %v", got, want)
	}
	got = wantedSysctls(Desired{Name: "lan4.20", Addrs: pfx("192.0.2.1/25", "2001:db8:20::1/64")})
	want := []sysctlWant{
		{"net.ipv6.conf.lan4/20.accept_ra", "0"},
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dual stack: %v, want %v", got, want)
	}
	for _, w := range want {
		if !isGlobalSysctl(w.key) && !slices.Contains(managedIfSysctls("lan4.20"), w.key) {
			t.Errorf("%s is set per interface but not in managedIfSysctls: a re-created link would lose it", w.key)
		}
		if voipgwValue(w.key) != w.value {
			t.Errorf("voipgwValue(%s) = %s, want %s", w.key, voipgwValue(w.key), w.value)
		}
	}
	keys := sortedSysctlKeys(map[string]string{"net.ipv6.conf.voice.accept_ra": "1", "net.ipv6.conf.all.forwarding": "0", "net.ipv4.ip_forward": "0"})
	if want := []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.voice.accept_ra"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("release order %v, want %v", keys, want)
	}
}

func TestWantedBridgeVLANs(t *testing.T) {
	d := Desired{Name: "br-lan.20", Parent: "br-lan", VID: 20, AccessPorts: []string{"lan3", "lan4"}, Addrs: pfx("192.0.2.1/25")}
	if got := wantedBridgeVLANs(d, false); got != nil {
		t.Errorf("not a vlan-filtering bridge: %v, want none", got)
	}
	want := []BridgeVLAN{
		{Dev: "br-lan", VID: 20, Self: true},
		{Dev: "lan3", VID: 20, PVID: true, Untagged: true},
		{Dev: "lan4", VID: 20, PVID: true, Untagged: true},
	}
	if got := wantedBridgeVLANs(d, true); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestStateJSON(t *testing.T) {
	s := State{
		Name: "br-lan.20", Parent: "br-lan", VID: 20, CreatedLink: true, SetLinkUp: true,
		AddedAddrs:  pfx("192.0.2.1/25", "2001:db8:20::1/64"),
		Sysctls:     map[string]string{"net.ipv4.ip_forward": "0"},
		BridgeVLANs: []BridgeVLAN{{Dev: "br-lan", VID: 20, Self: true}, {Dev: "lan4", VID: 20, PVID: true, Untagged: true, PrevPVID: 1}},
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"added_addrs":["192.0.2.1/25","2001:db8:20::1/64"]`, `"created_link":true`, `"prev_pvid":1`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("JSON %s lacks %s", b, w)
		}
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip: %+v, want %+v", back, s)
	}
	if b, _ := json.Marshal(State{}); string(b) != "{}" {
		t.Errorf("zero State marshals as %s, want {}", b)
	}
	if !(State{}).IsZero() || s.IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestIsIfSysctlOf(t *testing.T) {
	for _, tc := range []struct {
		key, ifname string
		want        bool
	}{
		{"net.ipv6.conf.lan4/20.accept_ra", "lan4.20", true},
		{"net.ipv4.conf.voice.forwarding", "voice", true},
		{"net.ipv6.conf.voice2.accept_ra", "voice", false},
		{"net.ipv6.conf.all.forwarding", "all", true},
		{"net.ipv4.ip_forward", "voice", false},
	} {
		if got := isIfSysctlOf(tc.key, tc.ifname); got != tc.want {
			t.Errorf("isIfSysctlOf(%q, %q) = %v", tc.key, tc.ifname, got)
		}
	}
}
