// Package lab builds throw-away network namespaces for tests and for the demo:
// phones, a LAN PC, the gateway and an "internet" with a fake SIP platform.
// Only TEST-NET addresses are used and every namespace is removed on Close.
package lab

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/vishvananda/netns"
)

// NS is a named network namespace created by the lab (visible to `ip netns`).
type NS struct {
	Name   string
	handle netns.NsHandle
	once   sync.Once
}

// NewNS creates the named namespace /run/netns/NAME with its loopback up.
// It does not change the calling thread's namespace.
func NewNS(name string) (*NS, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		return nil, fmt.Errorf("create /run/netns: %w", err)
	}
	h, err := netns.NewNamed(name) // switches this thread into the new namespace
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	ns := &NS{Name: name, handle: h}
	if err := bringUpLoopback(); err != nil {
		_ = netns.Set(orig)
		ns.Close()
		return nil, err
	}
	if err := netns.Set(orig); err != nil {
		// This thread is now in the wrong namespace; never hand it back to the runtime.
		runtime.Goexit()
	}
	return ns, nil
}

// Do runs fn on a locked OS thread inside the namespace. Sockets opened by fn stay in
// the namespace after Do returns, so a test can dial from one namespace and listen in another.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.handle); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime destroys it when this goroutine exits.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", ns.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Handle returns the namespace's file handle (valid until Close).
func (ns *NS) Handle() netns.NsHandle { return ns.handle }

// Close removes the namespace. It is safe to call more than once.
func (ns *NS) Close() error {
	var err error
	ns.once.Do(func() {
		ns.handle.Close()
		err = netns.DeleteNamed(ns.Name)
	})
	return err
}

// RequireRoot skips the test when it cannot create network namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run the README's test command as root)")
	}
}

// TestNS creates a namespace for one test and removes it when the test ends, pass or fail.
func TestNS(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	ns, err := NewNS(fmt.Sprintf("vgt%d-%s", os.Getpid()%100000, name))
	if err != nil {
		t.Fatalf("create test netns: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("remove netns %s: %v", ns.Name, err)
		}
	})
	return ns
}
