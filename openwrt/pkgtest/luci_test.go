package pkgtest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// luci-app-voipgw: the files luci.mk would install, with their modes, byte for
// byte the repository's; the plugin's method list and the ACL agree.
func TestLuCIIPK(t *testing.T) {
	out := packages(t)
	files, _ := filepath.Glob(filepath.Join(out, "luci-app-voipgw_*_all.ipk"))
	if len(files) != 1 {
		t.Fatalf("luci-app-voipgw packages: %v, want one", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	names, outer := readTarGz(t, b)
	if want := []string{"./debian-binary", "./data.tar.gz", "./control.tar.gz"}; !slices.Equal(names, want) {
		t.Fatalf("outer members %q, want %q", names, want)
	}
	cnames, ctl := readTarGz(t, outer["./control.tar.gz"].body)
	checkModes(t, "control.tar.gz", cnames, ctl, map[string]int64{"./": 0o755, "./control": 0o644, "./postinst": 0o755})
	fields := parseControl(t, string(ctl["./control"].body))
	if fields["Package"] != "luci-app-voipgw" || fields["Architecture"] != "all" ||
		!strings.Contains(fields["Depends"], "voipgw") || !strings.Contains(fields["Depends"], "luci-base") {
		t.Errorf("control: %v", fields)
	}
	const app = root + "/openwrt/luci-app-voipgw/"
	want := map[string]int64{
		"./": 0o755, "./usr/": 0o755, "./usr/libexec/": 0o755, "./usr/libexec/rpcd/": 0o755, "./usr/libexec/rpcd/voipgw": 0o755,
		"./usr/share/": 0o755, "./usr/share/luci/": 0o755, "./usr/share/luci/menu.d/": 0o755, "./usr/share/luci/menu.d/luci-app-voipgw.json": 0o644,
		"./usr/share/rpcd/": 0o755, "./usr/share/rpcd/acl.d/": 0o755, "./usr/share/rpcd/acl.d/luci-app-voipgw.json": 0o644,
		"./www/": 0o755, "./www/luci-static/": 0o755, "./www/luci-static/resources/": 0o755, "./www/luci-static/resources/view/": 0o755,
		"./www/luci-static/resources/view/voipgw/":          0o755,
		"./www/luci-static/resources/view/voipgw/config.js": 0o644, "./www/luci-static/resources/view/voipgw/status.js": 0o644,
	}
	dnames, data := readTarGz(t, outer["./data.tar.gz"].body)
	checkModes(t, "data.tar.gz", dnames, data, want)
	for name := range want {
		if strings.HasSuffix(name, "/") {
			continue
		}
		src := app + "root/" + strings.TrimPrefix(name, "./")
		if strings.HasPrefix(name, "./www/") {
			src = app + "htdocs/" + strings.TrimPrefix(name, "./www/")
		}
		repo, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(repo, data[name].body) {
			t.Errorf("%s differs from %s", name, src)
		}
	}

	// Every method the ACL grants is one the plugin lists, and the other way round.
	var acl map[string]struct {
		Read, Write struct {
			Ubus map[string][]string `json:"ubus"`
		}
	}
	if err := json.Unmarshal(data["./usr/share/rpcd/acl.d/luci-app-voipgw.json"].body, &acl); err != nil {
		t.Fatalf("ACL: %v", err)
	}
	var granted []string
	for _, a := range acl {
		for obj, ms := range a.Read.Ubus {
			for _, m := range ms {
				granted = append(granted, obj+"."+m)
			}
		}
		for obj, ms := range a.Write.Ubus {
			for _, m := range ms {
				granted = append(granted, obj+"."+m)
			}
		}
	}
	lst, err := exec.Command("/bin/sh", app+"root/usr/libexec/rpcd/voipgw", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var methods map[string]map[string]string
	if err := json.Unmarshal(lst, &methods); err != nil {
		t.Fatalf("plugin list: %v\n%s", err, lst)
	}
	var listed []string
	for m := range methods {
		listed = append(listed, "voipgw."+m)
	}
	slices.Sort(granted)
	slices.Sort(listed)
	if !slices.Equal(granted, listed) {
		t.Errorf("ACL grants %v, the plugin lists %v", granted, listed)
	}
}
