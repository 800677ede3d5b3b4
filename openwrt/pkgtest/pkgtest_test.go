// Package pkgtest checks what voipgw ships: the .ipk files scripts/package builds
// (container, layout, permissions, conffiles, arch field against the binary's ELF
// header), the OpenWrt scripts (syntax in the shells OpenWrt and Debian use, and
// their behaviour against stand-ins for uci, procd and the init script), and the
// systemd unit.
package pkgtest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/voipgw/voipgw/config"
)

const root = "../.."

// entry is one tar member.
type entry struct {
	hdr  *tar.Header
	body []byte
}

// readTarGz returns the members of a gzipped tar in archive order.
func readTarGz(t *testing.T, b []byte) ([]string, map[string]entry) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var names []string
	m := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		m[h.Name] = entry{h, body}
	}
	return names, m
}

// The OpenWrt package architectures scripts/package builds, with the ELF identity
// their binary must have.
var arches = map[string]struct {
	machine elf.Machine
	order   string // "LSB" or "MSB"
	class   elf.Class
}{
	"mips_24kc":                {elf.EM_MIPS, "MSB", elf.ELFCLASS32},
	"mipsel_24kc":              {elf.EM_MIPS, "LSB", elf.ELFCLASS32},
	"mipsel_74kc":              {elf.EM_MIPS, "LSB", elf.ELFCLASS32},
	"arm_cortex-a7_neon-vfpv4": {elf.EM_ARM, "LSB", elf.ELFCLASS32},
	"arm_cortex-a9_vfpv3-d16":  {elf.EM_ARM, "LSB", elf.ELFCLASS32},
	"aarch64_cortex-a53":       {elf.EM_AARCH64, "LSB", elf.ELFCLASS64},
	"aarch64_generic":          {elf.EM_AARCH64, "LSB", elf.ELFCLASS64},
	"x86_64":                   {elf.EM_X86_64, "LSB", elf.ELFCLASS64},
}

// The files of the package, with their modes as OpenWrt's INSTALL_BIN (0755),
// INSTALL_CONF (0600) and INSTALL_DATA (0644) give them.
var wantData = map[string]int64{
	"./":                              0o755,
	"./usr/":                          0o755,
	"./usr/sbin/":                     0o755,
	"./usr/sbin/voipgw":               0o755,
	"./etc/":                          0o755,
	"./etc/init.d/":                   0o755,
	"./etc/init.d/voipgw":             0o755,
	"./etc/config/":                   0o755,
	"./etc/config/voipgw":             0o600,
	"./etc/hotplug.d/":                0o755,
	"./etc/hotplug.d/iface/":          0o755,
	"./etc/hotplug.d/iface/30-voipgw": 0o644,
	"./etc/uci-defaults/":             0o755,
	"./etc/uci-defaults/90-voipgw":    0o755,
}

var wantControl = map[string]int64{"./": 0o755, "./control": 0o644, "./conffiles": 0o644, "./postinst": 0o755, "./prerm": 0o755, "./prerm-pkg": 0o755}

var (
	pkgOnce sync.Once
	pkgDir  string
	pkgErr  error
	pkgOut  string
)

// packages runs scripts/package once for the whole test binary.
func packages(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: builds the binaries for every architecture (-short)")
	}
	for _, tool := range []string{"bash", "tar", "gzip", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	pkgOnce.Do(func() {
		pkgDir, pkgErr = os.MkdirTemp("", "voipgw-pkgtest")
		if pkgErr != nil {
			return
		}
		cmd := exec.Command("bash", "scripts/package")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "PKG_OUT="+filepath.Join(pkgDir, "out"), "BUILD_DIR="+filepath.Join(pkgDir, "bin"))
		out, err := cmd.CombinedOutput()
		pkgOut = string(out)
		if err != nil {
			pkgErr = fmt.Errorf("scripts/package: %v\n%s", err, out)
		}
	})
	if pkgErr != nil {
		t.Fatal(pkgErr)
	}
	return filepath.Join(pkgDir, "out")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pkgDir != "" {
		os.RemoveAll(pkgDir)
	}
	os.Exit(code)
}

func TestIPKs(t *testing.T) {
	out := packages(t)
	t.Logf("scripts/package:\n%s", pkgOut)
	files, err := filepath.Glob(filepath.Join(out, "voipgw_*.ipk"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(arches) {
		t.Fatalf("%d packages, want one per arch (%d): %v", len(files), len(arches), files)
	}
	example, err := os.ReadFile(filepath.Join(root, "openwrt/files/voipgw.config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			names, outer := readTarGz(t, b)
			// opkg reads the members by name, ipkg-build writes them in this order.
			if want := []string{"./debian-binary", "./data.tar.gz", "./control.tar.gz"}; !slices.Equal(names, want) {
				t.Fatalf("outer members %q, want %q", names, want)
			}
			if s := string(outer["./debian-binary"].body); s != "2.0\n" {
				t.Errorf("debian-binary = %q", s)
			}

			cnames, ctl := readTarGz(t, outer["./control.tar.gz"].body)
			checkModes(t, "control.tar.gz", cnames, ctl, wantControl)
			fields := parseControl(t, string(ctl["./control"].body))
			arch := fields["Architecture"]
			want, ok := arches[arch]
			if !ok {
				t.Fatalf("Architecture %q is not one scripts/package knows", arch)
			}
			if fields["Package"] != "voipgw" || !strings.HasPrefix(name, "voipgw_"+fields["Version"]+"_"+arch+".ipk") {
				t.Errorf("file name %s does not match Package %q, Version %q, Architecture %q", name, fields["Package"], fields["Version"], arch)
			}
			for _, k := range []string{"Version", "Depends", "Section", "Installed-Size", "Description"} {
				if fields[k] == "" {
					t.Errorf("control lacks %s", k)
				}
			}
			if got := string(ctl["./conffiles"].body); got != "/etc/config/voipgw\n" {
				t.Errorf("conffiles = %q", got)
			}
			for _, s := range []string{"./postinst", "./prerm", "./prerm-pkg"} {
				if !strings.HasPrefix(string(ctl[s].body), "#!/bin/sh\n") {
					t.Errorf("%s does not start with #!/bin/sh", s)
				}
			}
			if !strings.Contains(string(ctl["./postinst"].body), "default_postinst $0 $@") ||
				!strings.Contains(string(ctl["./prerm"].body), "default_prerm $0 $@") {
				t.Errorf("postinst/prerm do not hand over to OpenWrt's default_postinst/default_prerm")
			}

			dataTar := outer["./data.tar.gz"].body
			dnames, data := readTarGz(t, dataTar)
			checkModes(t, "data.tar.gz", dnames, data, wantData)
			// Every conffile is in the package; the shipped config is valid and safe.
			for _, cf := range strings.Fields(string(ctl["./conffiles"].body)) {
				if _, ok := data["."+cf]; !ok {
					t.Errorf("conffile %s is not in data.tar.gz", cf)
				}
			}
			if !bytes.Equal(data["./etc/config/voipgw"].body, example) {
				t.Errorf("/etc/config/voipgw differs from openwrt/files/voipgw.config")
			}
			zr, _ := gzip.NewReader(bytes.NewReader(dataTar))
			raw, _ := io.ReadAll(zr)
			if n, _ := strconv.Atoi(fields["Installed-Size"]); n != len(raw) {
				t.Errorf("Installed-Size %s, data.tar is %d bytes", fields["Installed-Size"], len(raw))
			}

			// The binary is for the architecture the control file names, and static.
			e, err := elf.NewFile(bytes.NewReader(data["./usr/sbin/voipgw"].body))
			if err != nil {
				t.Fatalf("usr/sbin/voipgw is not ELF: %v", err)
			}
			order := "LSB"
			if e.ByteOrder.String() == "BigEndian" {
				order = "MSB"
			}
			if e.Machine != want.machine || order != want.order || e.Class != want.class {
				t.Errorf("binary is %s %s %s, Architecture %s needs %s %s %s", e.Machine, order, e.Class, arch, want.machine, want.order, want.class)
			}
			for _, p := range e.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("binary is dynamically linked (%s)", p.Type)
				}
			}
		})
	}
}

func checkModes(t *testing.T, what string, names []string, m map[string]entry, want map[string]int64) {
	t.Helper()
	for _, n := range names {
		h := m[n].hdr
		w, ok := want[n]
		if !ok {
			t.Errorf("%s: unexpected member %s", what, n)
			continue
		}
		if h.Mode&0o7777 != w {
			t.Errorf("%s: %s mode %04o, want %04o", what, n, h.Mode&0o7777, w)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d, want 0:0", what, n, h.Uid, h.Gid)
		}
		if strings.HasSuffix(n, "/") != (h.Typeflag == tar.TypeDir) {
			t.Errorf("%s: %s has type %c", what, n, h.Typeflag)
		}
	}
	for n := range want {
		if _, ok := m[n]; !ok {
			t.Errorf("%s: missing %s", what, n)
		}
	}
}

// parseControl reads a Debian-style control file; continuation lines start with a space.
func parseControl(t *testing.T, s string) map[string]string {
	t.Helper()
	m := map[string]string{}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, " ") && last != "" {
			m[last] += "\n" + l
			continue
		}
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Errorf("control line %q is not Field: value", l)
			continue
		}
		m[k], last = v, k
	}
	return m
}

// Building again from the same binaries gives the same bytes.
func TestIPKsReproducible(t *testing.T) {
	out := packages(t)
	again := filepath.Join(pkgDir, "again")
	cmd := exec.Command("bash", "scripts/package", "mips_24kc", "x86_64")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PKG_NO_BUILD=1", "PKG_OUT="+again, "BUILD_DIR="+filepath.Join(pkgDir, "bin"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for _, a := range []string{"mips_24kc", "x86_64"} {
		m, _ := filepath.Glob(filepath.Join(out, "*_"+a+".ipk"))
		n, _ := filepath.Glob(filepath.Join(again, "*_"+a+".ipk"))
		if len(m) != 1 || len(n) != 1 {
			t.Fatalf("%s: %v %v", a, m, n)
		}
		x, _ := os.ReadFile(m[0])
		y, _ := os.ReadFile(n[0])
		if !bytes.Equal(x, y) {
			t.Errorf("%s: a second build differs", a)
		}
	}
}

// The packaged /etc/config/voipgw is the example with the access port commented out:
// installing the package must not take a LAN port away before the admin says so.
func TestPackagedConfig(t *testing.T) {
	cfg, _, err := config.Load(filepath.Join(root, "openwrt/files/voipgw.config"))
	if err != nil {
		t.Fatalf("packaged config: %v", err)
	}
	if len(cfg.Net.AccessPorts) != 0 {
		t.Errorf("packaged config makes %v access ports of the VoIP VLAN", cfg.Net.AccessPorts)
	}
	ex, _, err := config.Load(filepath.Join(root, "openwrt/voipgw.config"))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	ex.Net.AccessPorts = nil
	if ex.Hash() != cfg.Hash() {
		t.Errorf("packaged config differs from openwrt/voipgw.config in more than the access ports")
	}
}
