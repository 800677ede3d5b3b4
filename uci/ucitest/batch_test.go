package ucitest

import (
	"strings"
	"testing"

	"github.com/voipgw/voipgw/uci"
)

func TestApply(t *testing.T) {
	base, err := uci.Parse("firewall", strings.NewReader("config zone\n\toption name 'lan'\nconfig rule 'old'\n\toption name 'x'\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Apply(base, "firewall", []string{
		"set firewall.z=zone",
		"set firewall.z.name='voipgw'",
		"add_list firewall.z.device='a'",
		"add_list firewall.z.device='b'",
		"delete firewall.old",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "config zone\n\toption name 'lan'\n\nconfig zone 'z'\n\toption name 'voipgw'\n\tlist device 'a'\n\tlist device 'b'\n"
	if s := uci.Format(got); s != want {
		t.Errorf("after:\n%s\nwant:\n%s", s, want)
	}
	if len(base.Sections) != 2 {
		t.Errorf("the caller's file changed")
	}
	for _, bad := range []string{"set network.z=zone", "set firewall.z=zone", "delete firewall.nope", "set firewall.nope.x='1'", "set firewall.z.name=unquoted value", "rename firewall.z=y"} {
		if _, err := Apply(got, "firewall", []string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
