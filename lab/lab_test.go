package lab

import (
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"
)

// Without voipgw, the lab routes: the gateway reaches the internet hosts over both families.
func TestLabRoutes(t *testing.T) {
	RequireRoot(t)
	l, err := New(fmt.Sprintf("vgl%d", os.Getpid()%100000))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.StartPlatform(); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(SBC, 5060), netip.AddrPortFrom(SBC6, 5060)} {
		got, reply, err := Probe(l.GW, "udp", netip.AddrPort{}, dst, 3*time.Second)
		if err != nil || got != Reached {
			t.Errorf("gw → %s: %s %v", dst, got, err)
		}
		t.Log(reply)
	}
}
