package main

import (
	"flag"
	"fmt"
	"os/exec"
	"time"

	"github.com/voipgw/voipgw/lab"
)

var applyRounds = flag.Int("apply-rounds", 21, "apply: rounds (each runs voipgw apply and nft -f once)")

// The example config (openwrt/voipgw.config) on the lab's devices: its profiles
// without host names (yealink's are names: they would make apply resolve), its scan
// section, and 1 000 literal allowlist entries.
func applyConfig(n int) string {
	sec, _ := entries(n)
	return lab.Config(noNameProfiles + `
config profile
	option name 'webex'
	option enabled '0'

config scan 'scan'
	option enabled '1'
	option threshold '10'
	option window '3'
	option timeout '3600'
` + sec)
}

func benchApply(e *env) error {
	const n = 1000
	cfg, err := e.write("apply", applyConfig(n))
	if err != nil {
		return err
	}
	if out, err := e.voipgw(cfg, "apply"); err != nil { // interface, sysctls: the rounds re-apply
		return fmt.Errorf("first apply: %v\n%s", err, out)
	}
	rendered, err := e.voipgw(cfg, "render", "--no-resolve")
	if err != nil {
		return err
	}
	// nft -f replaces the table as apply does: create (if absent), delete, load, in one file.
	nftFile, err := e.write("rendered.nft", "table inet voipgw\ndelete table inet voipgw\n"+rendered)
	if err != nil {
		return err
	}
	if n, err := e.setElements("voipgw", "allow4"); err == nil {
		fmt.Printf("setup: %d elements in allow4\n", n)
	}
	timeIt := func(name string, args ...string) (float64, error) {
		var d time.Duration
		err := e.l.GW.Do(func() error {
			t0 := time.Now()
			out, err := exec.Command(name, args...).CombinedOutput()
			d = time.Since(t0)
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", name, err, out)
			}
			return nil
		})
		return float64(d.Microseconds()) / 1000, err
	}
	a := series{name: "voipgw apply", unit: "ms"}
	b := series{name: "nft -f rendered table", unit: "ms"}
	c := series{name: "voipgw render (no kernel)", unit: "ms"}
	fmt.Printf("\napply: re-apply of the example config with %d literal entries (table present), %d rounds, alternating\n", n, *applyRounds)
	for r := range *applyRounds {
		ms, err := timeIt(*voipgwBin, "render", "--no-resolve", "--config", cfg)
		if err != nil {
			return err
		}
		c.v = append(c.v, ms)
		for k := range 2 {
			if (r+k)%2 == 0 {
				ms, err := timeIt(*voipgwBin, "apply", "--config", cfg, "--state-dir", cfg+".state")
				if err != nil {
					return err
				}
				a.v = append(a.v, ms)
			} else {
				ms, err := timeIt("nft", "-f", nftFile)
				if err != nil {
					return err
				}
				b.v = append(b.v, ms)
			}
		}
	}
	fmt.Println(a.summary())
	fmt.Println(b.summary())
	fmt.Println(c.summary())
	fmt.Println(ratioLine("voipgw apply / nft -f", &a, &b, "<=", 0.5))
	return nil
}
