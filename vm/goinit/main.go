// Command goinit is the /init of the big-endian MIPS test VM (scripts/vm/run
// mips), where Debian has no busybox to run scripts/vm/init. It does what that
// script does, with the same VOIPGW-VM: markers, for a kernel with everything
// built in (no modules): mount the pseudo file systems, bring lo up, run
// /t/*/test with -test.v and power off.
//
// It uses the standard library only, so it builds for any GOARCH.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const marker = "VOIPGW-VM: "

func main() {
	setup()
	cfg := readConfig("/vm/config")
	fmt.Printf("%sBOOTED uptime=%s kernel=%s machine=%s cpus=%d\n", marker, uptime(), uname().release, uname().machine, numCPU())
	// Modules: this kernel has them built in; say so in the same format as the shell init.
	if b, _ := os.ReadFile("/vm/modules"); len(strings.TrimSpace(string(b))) > 0 {
		fmt.Printf("%sMODULE-FAILED /vm/modules: goinit cannot load modules\n", marker)
		fmt.Printf("%sMODULES loaded=0 nodev=0 failed=1 uptime=%s\n", marker, uptime())
	} else {
		fmt.Printf("%sMODULES loaded=0 nodev=0 failed=0 uptime=%s\n", marker, uptime())
	}
	if err := setLinkUp("lo"); err != nil {
		fmt.Printf("goinit: lo up: %v\n", err)
	}

	dirs, _ := filepath.Glob("/t/*")
	n, failed := 0, 0
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "test")); err != nil {
			continue
		}
		nameB, _ := os.ReadFile(filepath.Join(d, "name"))
		name := strings.TrimSpace(string(nameB))
		args := []string{"-test.v", "-test.timeout", cfg["VM_TEST_TIMEOUT"]}
		if r := cfg["VM_RUN"]; r != "" {
			args = append(args, "-test.run", r)
		}
		if r := cfg["VM_SKIP"]; r != "" {
			args = append(args, "-test.skip", r)
		}
		args = append(args, strings.Fields(cfg["VM_TEST_ARGS"])...)
		fmt.Printf("%sBEGIN %s\n", marker, name)
		start := time.Now()
		// Like go test: run in the package's directory (/src/PATH, with the testdata).
		cmd := exec.Command(filepath.Join(d, "test"), args...)
		cmd.Dir = d
		if b, err := os.ReadFile(filepath.Join(d, "dir")); err == nil {
			cmd.Dir = strings.TrimSpace(string(b))
		}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		rc := 0
		if err := cmd.Run(); err != nil {
			rc = 1
			if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
				rc = ee.ExitCode()
			}
			if _, ok := err.(*exec.ExitError); !ok {
				fmt.Printf("goinit: %v\n", err)
			}
		}
		fmt.Printf("\n%sEND %s rc=%d secs=%.2f\n", marker, name, rc, time.Since(start).Seconds())
		n++
		if rc != 0 {
			failed++
		}
	}
	fmt.Printf("%sDONE binaries=%d failed=%d uptime=%s\n", marker, n, failed, uptime())
	syscall.Sync()
	// A reset rather than a power-off: QEMU runs with -no-reboot, so a reset ends it.
	// The big-endian malta's power-off (piix4-poweroff, bound and called) leaves
	// QEMU 7.2 running; the reset works.
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	// If that returns, exiting makes the kernel panic, and panic=-1 with -no-reboot ends QEMU.
	time.Sleep(5 * time.Second)
	os.Exit(1)
}

func setup() {
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/var", "/root"} {
		os.MkdirAll(d, 0o755)
	}
	mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	// Without /dev/console in the archive the kernel starts init with no stdio.
	if f, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			syscall.Dup3(int(f.Fd()), fd, 0)
		}
	}
	mount("proc", "/proc", "proc", 0, "")
	mount("sysfs", "/sys", "sysfs", 0, "")
	mount("tmpfs", "/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755")
	mount("tmpfs", "/tmp", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777")
	os.MkdirAll("/run/netns", 0o755)
	os.Symlink("/run", "/var/run")
	os.MkdirAll("/dev/shm", 0o1777)
	mount("tmpfs", "/dev/shm", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777")
	os.WriteFile("/proc/sys/kernel/panic_on_oops", []byte("1"), 0)
	syscall.Sethostname([]byte("voipgw-vm"))
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	os.Setenv("HOME", "/root")
	os.Setenv("TMPDIR", "/tmp")
	os.Setenv("VOIPGW_VM", "1")
	if _, err := os.Stat("/usr/bin/voipgw"); err == nil {
		os.Setenv("VOIPGW_BIN", "/usr/bin/voipgw")
	}
}

func mount(src, dst, fstype string, flags uintptr, data string) {
	if err := syscall.Mount(src, dst, fstype, flags, data); err != nil {
		fmt.Fprintf(os.Stderr, "goinit: mount %s on %s: %v\n", fstype, dst, err)
	}
}

// readConfig parses the KEY='value' lines that scripts/vm/run writes (shell quoting,
// where a quote inside a value is written '\”).
func readConfig(path string) map[string]string {
	cfg := map[string]string{"VM_TEST_TIMEOUT": "10m"}
	f, err := os.Open(path)
	if err != nil {
		return cfg
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), "=")
		if !ok {
			continue
		}
		v = strings.ReplaceAll(v, `'\''`, "\x00")
		v = strings.Trim(v, "'")
		cfg[k] = strings.ReplaceAll(v, "\x00", "'")
	}
	return cfg
}

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

type unameInfo struct{ release, machine string }

func uname() unameInfo {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return unameInfo{"?", "?"}
	}
	return unameInfo{cstring(u.Release[:]), cstring(u.Machine[:])}
}

// cstring converts a NUL-terminated utsname field (int8 or uint8 by GOARCH).
func cstring[T int8 | uint8](a []T) string {
	b := make([]byte, 0, len(a))
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func numCPU() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 1
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		var lo, hi int
		if c, _ := fmt.Sscanf(r, "%d-%d", &lo, &hi); c == 2 {
			n += hi - lo + 1
		} else {
			n++
		}
	}
	return n
}

// setLinkUp sets IFF_UP on an interface with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls.
func setLinkUp(name string) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [24]byte
	}
	copy(ifr.name[:], name)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	ifr.flags |= syscall.IFF_UP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	return nil
}
