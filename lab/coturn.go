package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Verdict lines printed by turnutils_natdiscovery (coturn 4.6.1), each on a
// line of its own between lines of "=" signs. Without NAT the mapping test
// prints NATNoNAT and then NATEIM as well; the filtering test prints NATNoNAT
// and then NATEIF.
const (
	NATNoNAT = "No NAT! (Endpoint Independent Mapping)"
	NATEIM   = "NAT with Endpoint Independent Mapping!"
	NATADM   = "NAT with Address Dependent Mapping!"
	NATAPDM  = "NAT with Address and Port Dependent Mapping!"
	NATEIF   = "NAT with Endpoint Independent Filtering!"
	NATADF   = "NAT with Address Dependent Filtering!"
	NATAPDF  = "NAT with Address and Port Dependent Filtering!"
)

// Coturn is coturn's turnserver running as a STUN-only RFC 5780 server in the
// internet namespace: the independent judge of the gateway's NAT behaviour,
// queried with coturn's own turnutils_natdiscovery.
type Coturn struct {
	Primary, Alt netip.Addr
	Port         uint16 // the alternate port is Port+1
	cmd          *exec.Cmd
	dir          string
	done         chan struct{} // closed when turnserver has exited
	waitErr      error         // valid after done is closed
	stopOnce     sync.Once
	log          SyncBuffer // turnserver's stdout and stderr
}

// StartCoturn starts turnserver on primary and alt (two addresses of the same
// family in the inet namespace) and waits until it listens on both addresses
// at port and port+1. It stops with the lab.
//
// Notes on turnserver:
//   - -n is essential: without it turnserver reads /etc/turnserver.conf,
//     whose Debian default contains "syslog" (the log goes to syslog, i.e.
//     nowhere here, despite --log-file stdout) and "no-rfc5780" (no
//     alternate-port listeners, no OTHER-ADDRESS, CHANGE-REQUEST ignored).
//   - RFC 5780 is on by default when there are two listening addresses of the
//     same family; the alternate port is --alt-listening-port.
//   - The userdb (SQLite) and pid file go to a private temporary directory.
func (l *Lab) StartCoturn(primary, alt netip.Addr, port uint16) (*Coturn, error) {
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		return nil, fmt.Errorf("turnserver not installed (apt-get install coturn): %w", err)
	}
	if !primary.IsValid() || !alt.IsValid() || primary == alt || primary.Is4() != alt.Is4() {
		return nil, fmt.Errorf("coturn: RFC 5780 needs two different addresses of one family, got %s and %s", primary, alt)
	}
	if port == 0 || port == 65535 {
		return nil, fmt.Errorf("coturn: bad port %d (the alternate port is port+1)", port)
	}
	dir, err := os.MkdirTemp("", "coturn-")
	if err != nil {
		return nil, err
	}
	c := &Coturn{Primary: primary, Alt: alt, Port: port, dir: dir, done: make(chan struct{})}
	c.cmd = exec.Command(bin,
		"-n", // do not read /etc/turnserver.conf (see above)
		"--stun-only", "--no-auth", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp",
		"--listening-ip", primary.String(), "--listening-ip", alt.String(),
		"--listening-port", strconv.Itoa(int(port)), "--alt-listening-port", strconv.Itoa(int(port)+1),
		"--log-file", "stdout", "--simple-log", "-v", "--log-binding",
		"--pidfile", filepath.Join(dir, "turnserver.pid"), "--userdb", filepath.Join(dir, "turndb"))
	c.cmd.Dir = dir
	c.cmd.Stdout = &c.log
	c.cmd.Stderr = &c.log
	if err := l.Inet.Do(c.cmd.Start); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start turnserver in %s: %w", l.Inet.Name, err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
	}()
	l.closers = append(l.closers, func() error { c.stop(); return nil })

	// Ready when all four endpoints (two addresses, two ports) are bound.
	// turnserver opens one socket per endpoint and UDP thread (SO_REUSEPORT),
	// so an endpoint may be listed more than once.
	want := []netip.AddrPort{
		netip.AddrPortFrom(primary, port), netip.AddrPortFrom(primary, port+1),
		netip.AddrPortFrom(alt, port), netip.AddrPortFrom(alt, port+1),
	}
	var ssErr error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			c.stop()
			return nil, fmt.Errorf("turnserver exited (%v):\n%s", c.waitErr, c.Log())
		default:
		}
		var out string
		out, ssErr = l.Inet.Run("ss", "-Hnlu")
		bound := map[netip.AddrPort]bool{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 4 {
				if ap, err := netip.ParseAddrPort(f[3]); err == nil {
					bound[ap] = true
				}
			}
		}
		n := 0
		for _, ap := range want {
			if bound[ap] {
				n++
			}
		}
		if n == len(want) {
			return c, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.stop()
	return nil, errors.Join(ssErr, fmt.Errorf("turnserver did not listen on %v within 10 s:\n%s", want, c.Log()))
}

// stop kills turnserver, waits for it and removes its directory. It is safe to
// call more than once.
func (c *Coturn) stop() {
	c.stopOnce.Do(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
		os.RemoveAll(c.dir)
	})
}

// Log is what turnserver printed so far (its log, -v with --log-binding: one
// line per endpoint and per processed Binding request).
func (c *Coturn) Log() string {
	return c.log.String()
}

// NATDiscovery runs coturn's turnutils_natdiscovery -m -f in ns from local
// against the server and returns its output; match it against the NAT*
// verdict constants. The local port applies to the mapping test only; the
// filtering test binds an ephemeral port on local's address. A filtering test
// that ends in ADF or APDF waits for one or two 3 s receive timeouts
// ("STUN receive timeout.."). turnutils_natdiscovery exits 0 regardless of the
// outcome.
func (c *Coturn) NATDiscovery(ns *NS, local netip.AddrPort) (string, error) {
	return ns.Run("turnutils_natdiscovery", "-m", "-f", "-L", local.Addr().String(), "-l", strconv.Itoa(int(local.Port())),
		"-p", strconv.Itoa(int(c.Port)), c.Primary.String())
}
