package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"

	"github.com/voipgw/voipgw/lab"
)

var (
	dur         = flag.Duration("dur", 2*time.Second, "forward: measuring time of one variant in one round")
	bigN        = flag.Int("entries", 100000, "forward: allowlist entries of the large table")
	linearN     = flag.Int("linear", 100000, "forward: rules of the linear chain (0: skip it)")
	payloadLen  = flag.Int("payload", 64, "forward: UDP payload bytes")
	baselineBin = flag.String("baseline", "", "a second voipgw binary (the one before a change) measured in the same rounds")
	ablate      = flag.Bool("ablate", false, "forward: also measure the voipgw table with parts removed (what its per-packet cost is made of)")
	twoWay      = flag.Bool("twoway", false, "forward: the receiver echoes every datagram (a two-way RTP-like flow: established after the first reply); the figure is the datagrams forwarded both ways")
	extraTables = flag.String("tables", "", "forward: comma-separated nft files, each a candidate 'table inet voipgw' (e.g. an edited `voipgw render`), measured as more variants")
)

var target = netip.AddrPortFrom(lab.SBC, targetPort)

// A variant is one nftables table in the gateway; all variants are installed once
// and each phase wakes exactly one of them, the others dormant (base chains
// unregistered: no cost per packet).
type variant struct {
	name   string
	family string // nft family
	table  string
	pps    series
}

func benchForward(e *env) error {
	smallSec, _ := entries(10)
	bigSec, bigPairs := entries(*bigN)
	small, err := e.write("small", lab.Config(noNameProfiles+smallSec))
	if err != nil {
		return err
	}
	big, err := e.write("big", strings.Replace(lab.Config(noNameProfiles+bigSec), "option table 'voipgw'", "option table 'vgbig'", 1))
	if err != nil {
		return err
	}
	t0 := time.Now()
	if out, err := e.voipgw(small, "apply"); err != nil {
		return fmt.Errorf("apply 10 entries: %v\n%s", err, out)
	}
	fmt.Printf("setup: voipgw apply, 10 entries: %v\n", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if out, err := e.voipgw(big, "apply"); err != nil {
		return fmt.Errorf("apply %d entries: %v\n%s", *bigN, err, out)
	}
	fmt.Printf("setup: voipgw apply, %d entries: %v\n", *bigN, time.Since(t0).Round(time.Millisecond))
	if n, err := e.setElements("vgbig", "allow4"); err == nil {
		fmt.Printf("setup: table vgbig: %d elements in allow4 (hash set)\n", n)
	}
	const masq = `oifname "wan0" ip saddr 192.0.2.0/25 masquerade`
	if err := e.nft(fmt.Sprintf("table ip bench_masq {\n\tchain b_post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\t%s\n\t}\n}\n", masq)); err != nil {
		return err
	}
	vs := []*variant{
		{name: "masquerade only", family: "ip", table: "bench_masq"},
		{name: "voipgw, 10 entries", family: "inet", table: "voipgw"},
		{name: fmt.Sprintf("voipgw, %d entries", *bigN), family: "inet", table: "vgbig"},
	}
	if *baselineBin != "" {
		// The table of the voipgw before a change, for the same 10-entry config, in the
		// same rounds: its render, loaded with nft under another name.
		out, err := e.l.GW.Run(*baselineBin, "render", "--no-resolve", "--config", small, "--state-dir", small+".state")
		if err != nil {
			return fmt.Errorf("baseline render: %v\n%s", err, out)
		}
		if err := e.nft(strings.Replace(out, "table inet voipgw {", "table inet vgbase {", 1)); err != nil {
			return fmt.Errorf("baseline table: %w", err)
		}
		vs = append(vs, &variant{name: "baseline voipgw, 10 entries", family: "inet", table: "vgbase"})
	}
	if *linearN > 0 {
		// The chain a user would write instead: one rule per destination and port,
		// established first, the target in the middle (the average position).
		pairs := bigPairs
		if *linearN != *bigN {
			_, pairs = entries(*linearN)
		}
		mid := len(pairs) / 2
		pairs[0], pairs[mid] = pairs[mid], pairs[0]
		var b strings.Builder
		b.WriteString("table ip bench_linear {\n\tchain b_forward {\n\t\ttype filter hook forward priority filter - 1; policy accept;\n\t\tiifname \"voip0\" jump b_allow\n\t}\n\tchain b_allow {\n\t\tct state established,related accept\n")
		for _, p := range pairs {
			fmt.Fprintf(&b, "\t\tip daddr %s udp dport %s accept\n", p[0], p[1])
		}
		fmt.Fprintf(&b, "\t\tdrop\n\t}\n\tchain b_post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\t%s\n\t}\n}\n", masq)
		t0 = time.Now()
		if err := e.nft(b.String()); err != nil {
			return fmt.Errorf("linear chain of %d rules: %w", len(pairs), err)
		}
		fmt.Printf("setup: nft -f linear chain, %d rules: %v\n", len(pairs), time.Since(t0).Round(time.Millisecond))
		vs = append(vs, &variant{name: fmt.Sprintf("linear chain, %d rules", len(pairs)), family: "ip", table: "bench_linear"})
	}
	for i, f := range strings.Split(*extraTables, ",") {
		if f == "" {
			continue
		}
		text, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("vgx%d", i)
		if err := e.nft(strings.Replace(string(text), "table inet voipgw {", "table inet "+name+" {", 1)); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		vs = append(vs, &variant{name: "table " + filepath.Base(f), family: "inet", table: name})
	}
	if *ablate {
		more, err := e.ablations(small)
		if err != nil {
			return err
		}
		vs = append(vs, more...)
	}
	for _, v := range vs {
		v.pps = series{name: v.name, unit: "pps"}
	}

	rx, err := startReceiver(e.l.Inet, *twoWay)
	if err != nil {
		return err
	}
	defer rx.stop()
	if *twoWay {
		rx.back = e.l.Phone1
	}

	flow := "one-way: every packet is ct state new and goes through the allowlist lookup"
	if *twoWay {
		flow = "two-way: inet echoes every datagram, the flow is established after the first reply; pps = datagrams forwarded both ways"
	}
	fmt.Printf("\nforward: %d-byte UDP payloads, phone1 → gw → inet %s (%s), %d rounds × %v per variant, order rotated per round\n",
		*payloadLen, target, flow, *rounds, *dur)
	for r := range *rounds {
		for k := range vs {
			v := vs[(r+k)%len(vs)]
			pps, err := e.phase(vs, v, rx)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, v.name, err)
			}
			v.pps.v = append(v.pps.v, pps)
			fmt.Printf("  round %d  %-28s %10.0f pps\n", r+1, v.name, pps)
		}
	}
	fmt.Println()
	for _, v := range vs {
		fmt.Println(v.pps.summary())
	}
	fmt.Println(ratioLine("voipgw(10) / masquerade", &vs[1].pps, &vs[0].pps, ">=", 0.95))
	fmt.Println(ratioLine(fmt.Sprintf("voipgw(%d) / voipgw(10)", *bigN), &vs[2].pps, &vs[1].pps, ">=", 0.97))
	if len(vs) > 3 && vs[3].table == "bench_linear" {
		fmt.Println(ratioLine("linear / voipgw(10)", &vs[3].pps, &vs[1].pps, "", 0))
		fmt.Println(ratioLine(fmt.Sprintf("linear / voipgw(%d)", *bigN), &vs[3].pps, &vs[2].pps, "", 0))
	}
	for _, v := range vs[3:] {
		if v.table == "vgbase" {
			fmt.Println(ratioLine("baseline voipgw(10) / masquerade", &v.pps, &vs[0].pps, "", 0))
			fmt.Println(ratioLine("voipgw(10) / baseline voipgw(10)", &vs[1].pps, &v.pps, ">=", 1))
		}
		if strings.HasPrefix(v.table, "vgab") || strings.HasPrefix(v.table, "vgx") {
			fmt.Println(ratioLine(v.name+" / masq", &v.pps, &vs[0].pps, "", 0))
		}
	}
	// Proof that the voipgw tables were on the packets' path: their "allowed" counters.
	for _, t := range []string{"voipgw", "vgbig"} {
		out, _ := e.l.GW.Run("nft", "list", "counter", "inet", t, "allowed")
		fmt.Printf("check: table %s: %s\n", t, oneLine(out, "packets"))
	}
	return nil
}

func oneLine(s, key string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, key) {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(s)
}

func (e *env) setElements(table, set string) (int, error) {
	out, err := e.l.GW.Run("nft", "list", "set", "inet", table, set)
	if err != nil {
		return 0, err
	}
	return strings.Count(out, " . udp . ") + strings.Count(out, " . tcp . "), nil
}

// phase wakes v (the others dormant), sends from a fresh socket (a new conntrack
// entry and NAT binding) and returns the packets per second that reached the inet
// namespace's interface while it measured.
func (e *env) phase(vs []*variant, v *variant, rx *receiver) (float64, error) {
	var b strings.Builder
	for _, o := range vs {
		if o != v {
			fmt.Fprintf(&b, "add table %s %s { flags dormant; }\n", o.family, o.table)
		}
	}
	fmt.Fprintf(&b, "add table %s %s\n", v.family, v.table)
	if err := e.nft(b.String()); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	var sendErr error
	conn, err := dialIn(e.l.Phone1, target)
	if err != nil {
		cancel()
		return 0, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sendErr = blast(ctx, conn, &sent)
	}()
	time.Sleep(300 * time.Millisecond) // ARP, conntrack entry, NAT binding, caches
	c0, err := rx.linkPackets()
	if err != nil {
		cancel()
		wg.Wait()
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(*dur)
	c1, err := rx.linkPackets()
	el := time.Since(t0)
	cancel()
	wg.Wait()
	conn.Close()
	if err != nil {
		return 0, err
	}
	if sendErr != nil {
		return 0, sendErr
	}
	if c1 == c0 {
		return 0, errors.New("no packet reached the inet namespace")
	}
	return float64(c1-c0) / el.Seconds(), nil
}

// dialIn opens a connected UDP socket inside ns.
func dialIn(ns *lab.NS, dst netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	return c, err
}

// blast writes batches of datagrams (sendmmsg) until ctx ends.
func blast(ctx context.Context, c *net.UDPConn, sent *atomic.Int64) error {
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, 64)
	payload := make([]byte, *payloadLen)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{payload}
	}
	for ctx.Err() == nil {
		n, err := pc.WriteBatch(msgs, 0)
		if err != nil {
			// ENOBUFS/ECONNREFUSED: the path is saturated or an ICMP error came back; go on.
			continue
		}
		sent.Add(int64(n))
	}
	return nil
}

// receiver drains the target port in the inet namespace (so no ICMP port
// unreachable flows back), echoes what it reads when echo is set, and reads the
// interfaces' receive counters.
type receiver struct {
	ns   *lab.NS
	back *lab.NS // with echo: the sender's namespace, whose eth0 counts the echoes forwarded back
	conn *net.UDPConn
	got  atomic.Int64
	wg   sync.WaitGroup
}

func startReceiver(ns *lab.NS, echo bool) (*receiver, error) {
	r := &receiver{ns: ns}
	err := ns.Do(func() error {
		var err error
		r.conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(target))
		return err
	})
	if err != nil {
		return nil, err
	}
	_ = r.conn.SetReadBuffer(4 << 20)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		pc := ipv4.NewPacketConn(r.conn)
		msgs := make([]ipv4.Message, 64)
		for i := range msgs {
			msgs[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		out := make([]ipv4.Message, len(msgs))
		for {
			n, err := pc.ReadBatch(msgs, 0)
			if err != nil {
				return
			}
			r.got.Add(int64(n))
			if !echo {
				continue
			}
			// The same datagrams back to their sources: the sender never reads, its
			// socket drops them after its namespace's interface counted them.
			for i := range n {
				out[i] = ipv4.Message{Buffers: [][]byte{msgs[i].Buffers[0][:msgs[i].N]}, Addr: msgs[i].Addr}
			}
			_, _ = pc.WriteBatch(out[:n], 0)
		}
	}()
	return r, nil
}

func (r *receiver) stop() { r.conn.Close(); r.wg.Wait() }

// linkPackets is the inet namespace's eth0 receive counter: every datagram the
// gateway forwarded, whether or not the receiving socket kept up.
// With echo, the sender's namespace's eth0 receive counter is added: the echoes
// the gateway forwarded back.
func (r *receiver) linkPackets() (uint64, error) {
	var sum uint64
	for _, ns := range []*lab.NS{r.ns, r.back} {
		if ns == nil {
			continue
		}
		err := ns.Do(func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			sum += l.Attrs().Statistics.RxPackets
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return sum, nil
}

// ablations installs copies of the 10-entry table (as voipgw render prints it)
// without one part each, to see what the per-packet cost is made of.
func (e *env) ablations(cfg string) ([]*variant, error) {
	text, err := e.voipgw(cfg, "render", "--no-resolve")
	if err != nil {
		return nil, err
	}
	var vs []*variant
	for i, a := range []struct {
		name string
		drop []string // chains
		edit func(string) string
	}{
		{name: "voipgw − refresh tick (mappings, media tracking, pinholes)", edit: dropRules("@tick")},
		{name: "voipgw − SIP/RTP ct timeouts", edit: dropRules("ct timeout set")},
		{name: "voipgw − scan detection", edit: dropRules("jump wan_scan")},
		// Floors: what any filter in the forward hook costs. A voip_out of only the
		// WAN check and the confirmed accept, and a forward chain of one accept rule.
		{name: "floor: voip_out = WAN check + confirmed accept", edit: replaceChainBody("voip_out",
			"\t\toifname != \"wan0\" drop\n\t\tct status confirmed accept\n\t\taccept")},
		{name: "floor: forward hook, one accept rule", edit: replaceChainBody("forward",
			"\t\ttype filter hook forward priority filter - 1; policy accept;\n\t\tiifname \"voip0\" accept")},
	} {
		t := text
		for _, c := range a.drop {
			t = dropChain(t, c)
		}
		if a.edit != nil {
			t = a.edit(t)
		}
		name := fmt.Sprintf("vgab%d", i)
		t = strings.Replace(t, "table inet voipgw {", "table inet "+name+" {", 1)
		if err := e.nft(t); err != nil {
			return nil, fmt.Errorf("%s: %w", a.name, err)
		}
		vs = append(vs, &variant{name: a.name, family: "inet", table: name})
	}
	return vs, nil
}

// dropRules removes the rules of voip_out, input and forward that contain any of
// the strings (the parts folded into those chains: learning, tracking, timeouts).
func dropRules(subs ...string) func(string) string {
	return func(text string) string {
		var out []string
		chain := ""
		for _, l := range strings.Split(text, "\n") {
			if name, ok := strings.CutPrefix(l, "\tchain "); ok {
				chain = strings.TrimSuffix(name, " {")
			}
			if chain == "voip_out" || chain == "input" || chain == "forward" {
				if slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(l, sub) }) {
					continue
				}
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
}

// replaceChainBody replaces the lines of "\tchain NAME {" … "\t}" with body.
func replaceChainBody(name, body string) func(string) string {
	return func(text string) string { return rewriteChain(text, name, &body) }
}

// dropChain removes "\tchain NAME {" … "\t}" from nft text.
func dropChain(text, name string) string { return rewriteChain(text, name, nil) }

// rewriteChain replaces the lines inside chain name with *body, or drops the
// chain with its header and closing brace when body is nil.
func rewriteChain(text, name string, body *string) string {
	var out []string
	skip := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case l == "\tchain "+name+" {":
			skip = true
			if body != nil {
				out = append(out, l, *body)
			}
		case skip && l == "\t}":
			skip = false
			if body != nil {
				out = append(out, l)
			}
		case !skip:
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
