package lab

import (
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestNSIsolatedAndRemoved(t *testing.T) {
	RequireRoot(t)
	ns, err := NewNS("vgt-selftest")
	if err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vgtveth0"}, PeerName: "vgtveth1"})
	})
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("vgtveth0"); err == nil {
		t.Errorf("veth link created inside the namespace is visible outside it")
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if h, err := netns.GetFromName("vgt-selftest"); err == nil {
		h.Close()
		t.Errorf("namespace still exists after Close")
	}
}
