package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/voipgw/voipgw/lab"
	"github.com/voipgw/voipgw/uci"
)

// The LuCI pages of luci-app-voipgw in a real browser (headless Chromium) against
// a stand-in for uhttpd + rpcd: the page's JSON-RPC calls go to the real rpcd
// plugin (openwrt/luci-app-voipgw/root/usr/libexec/rpcd/voipgw), run with the
// real voipgw binary in the gateway namespace of a lab whose phones have leases,
// NAT mappings, learned DNS addresses and a detected scanner. The LuCI runtime
// itself is a stand-in (testdata/luci/standin.js): see the README for what that
// does not cover.

const luciApp = "../../openwrt/luci-app-voipgw"

// phone1Hostname is markup: a phone chooses its DHCP hostname, and the status page
// must show it as text.
const phone1Hostname = "<b>t54w</b>"

// luciLab is a lab gateway with everything the status page shows.
func luciLab(t *testing.T) (*lab.Lab, *gwCmd) {
	t.Helper()
	l, gw, z := dnsLab(t, "")
	for name, addrs := range lab.DNSNames { // the platform's names, so its SBCs are allowlisted
		z.Set(name, addrs...)
	}
	if err := l.StartSTUN([2]netip.Addr{lab.Platform, lab.STUNAlt}); err != nil {
		t.Fatal(err)
	}
	if err := l.StartSIPEcho(); err != nil {
		t.Fatal(err)
	}
	mac2, err := lab.HWAddr(l.Phone2, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(gw.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b) + stunAllow + fmt.Sprintf(`
config allow 'wild'
	list dest '*.wild.example'
	list port 'udp/5060'

config dhcp 'dhcp'
	option start '20'
	option limit '10'
	option leasetime '1h'

config host 'reception'
	option mac '%s'
	option ip '192.0.2.50'
	option name 'reception'
`, mac2)
	if err := os.WriteFile(gw.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, gw)
	waitFor(t, "the DHCP server and the DNS forwarder", d, func() bool {
		return strings.Contains(d.Log(), "component started\" component=dhcp") && strings.Contains(d.Log(), "component started\" component=dns")
	})
	if _, err := lab.DHCPLease(l.Phone1, "eth0", 3*time.Second,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("yealink SIP-T54W")), dhcpv4.WithOption(dhcpv4.OptHostName(phone1Hostname))); err != nil {
		t.Fatalf("phone1 lease: %v\n%s", err, d.Log())
	}
	if _, err := lab.DHCPLease(l.Phone2, "eth0", 3*time.Second, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("Gigaset N670 IP PRO"))); err != nil {
		t.Fatalf("phone2 lease: %v", err)
	}
	if addrs, rcode := resolveFrom(t, l.Phone1, gw4DNS, "udp", "phone.wild.example"); len(addrs) == 0 {
		t.Fatalf("phone.wild.example through the forwarder: rcode %d", rcode)
	}
	for _, p := range []struct {
		ns   *lab.NS
		addr netip.Addr
	}{{l.Phone1, lab.Phone1Addr.Addr()}, {l.Phone2, lab.Phone2Addr.Addr()}} {
		c, err := lab.ListenUDP(p.ns, ap(p.addr, 5062))
		if err != nil {
			t.Fatal(err)
		}
		mappedVia(t, c, ap(lab.SBC, 5060))
		c.Close()
	}
	wan := lab.WANGateway.Addr()
	for i := 0; i < 14; i++ { // the scanner is silenced from its 11th probe
		if _, _, err := lab.Probe(l.Inet, "tcp", ap(lab.Scanner, 0), ap(wan, uint16(2000+i)), 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	return l, gw
}

// rpcdStandin answers LuCI's JSON-RPC calls (POST /ubus) as uhttpd-mod-ubus and
// rpcd would for a session holding luci-app-voipgw's ACL: calls the ACL file does
// not grant are refused; "voipgw" calls run the real exec plugin; "uci get" reads
// the config with voipgw's UCI parser.
type rpcdStandin struct {
	t      *testing.T
	gw     *gwCmd
	plugin string
	ubus   map[string][]string // object → methods granted by the ACL (read and write)
	uciOK  map[string]bool     // configs granted by the ACL
	listed map[string]any      // the plugin's "list" answer
	calls  []string
}

func newRPCDStandin(t *testing.T, gw *gwCmd) *rpcdStandin {
	t.Helper()
	r := &rpcdStandin{t: t, gw: gw, plugin: filepath.Join(luciApp, "root/usr/libexec/rpcd/voipgw"), ubus: map[string][]string{}, uciOK: map[string]bool{}}
	b, err := os.ReadFile(filepath.Join(luciApp, "root/usr/share/rpcd/acl.d/luci-app-voipgw.json"))
	if err != nil {
		t.Fatal(err)
	}
	type grant struct {
		Ubus map[string][]string `json:"ubus"`
		UCI  []string            `json:"uci"`
	}
	var acl map[string]struct {
		Description string `json:"description"`
		Read        grant  `json:"read"`
		Write       grant  `json:"write"`
	}
	if err := json.Unmarshal(b, &acl); err != nil {
		t.Fatalf("ACL file: %v", err)
	}
	for _, a := range acl {
		for _, g := range []grant{a.Read, a.Write} {
			for obj, ms := range g.Ubus {
				r.ubus[obj] = append(r.ubus[obj], ms...)
			}
			for _, c := range g.UCI {
				r.uciOK[c] = true
			}
		}
	}
	out, err := exec.Command("/bin/sh", r.plugin, "list").Output()
	if err != nil {
		t.Fatalf("plugin list: %v", err)
	}
	if err := json.Unmarshal(out, &r.listed); err != nil {
		t.Fatalf("plugin list is not a JSON object: %v\n%s", err, out)
	}
	return r
}

func (r *rpcdStandin) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var in struct {
		ID     any               `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	reply := func(result any, errMsg string, code int) {
		out := map[string]any{"jsonrpc": "2.0", "id": in.ID}
		if errMsg != "" {
			out["error"] = map[string]any{"code": code, "message": errMsg}
		} else {
			out["result"] = result
		}
		json.NewEncoder(w).Encode(out)
	}
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil || in.Method != "call" || len(in.Params) != 4 {
		reply(nil, "Invalid request", -32600)
		return
	}
	var obj, method string
	json.Unmarshal(in.Params[1], &obj)
	json.Unmarshal(in.Params[2], &method)
	args := in.Params[3]
	r.calls = append(r.calls, obj+"."+method)
	switch obj {
	case "uci":
		var a struct {
			Config string         `json:"config"`
			Values map[string]any `json:"values"`
		}
		json.Unmarshal(args, &a)
		if !r.uciOK[a.Config] {
			reply(nil, "Access denied", -32002)
			return
		}
		switch method {
		case "get":
			v, err := uciValues(r.gw.config)
			if err != nil {
				reply([]any{5}, "", 0)
				return
			}
			reply([]any{0, map[string]any{"values": v}}, "", 0)
		case "standin_replace":
			if err := os.WriteFile(r.gw.config, []byte(uciFromValues(a.Values)), 0o644); err != nil {
				reply([]any{5}, "", 0)
				return
			}
			reply([]any{0}, "", 0)
		default:
			reply([]any{3}, "", 0) // UBUS_STATUS_METHOD_NOT_FOUND
		}
	case "voipgw":
		if !slices.Contains(r.ubus[obj], method) {
			reply(nil, "Access denied", -32002)
			return
		}
		if _, ok := r.listed[method]; !ok {
			reply([]any{3}, "", 0)
			return
		}
		cmd := exec.Command("ip", "netns", "exec", r.gw.l.GW.Name, "/bin/sh", r.plugin, "call", method)
		cmd.Env = append(os.Environ(), "VOIPGW="+voipgwBin, "VOIPGW_CONFIG="+r.gw.config, "VOIPGW_STATE_DIR="+r.gw.stateDir)
		cmd.Stdin = bytes.NewReader(args)
		started := time.Now()
		out, _ := cmd.Output() // rpcd ignores the exit code; status exits 1 on problems
		r.t.Logf("rpcd plugin call %s: %d bytes in %s", method, len(out), time.Since(started).Round(time.Millisecond))
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			r.t.Errorf("plugin call %s printed no JSON object: %v\n%s", method, err, out)
			reply([]any{5}, "", 0) // UBUS_STATUS_NO_DATA
			return
		}
		reply([]any{0, res}, "", 0)
	default:
		reply(nil, "Access denied", -32002)
	}
}

// uciValues is a config as rpcd's "uci get" returns it: sections by name (made-up
// cfgNN names for anonymous ones) with .name/.type/.anonymous/.index.
func uciValues(path string) (map[string]any, error) {
	f, err := uci.ParseFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for i, s := range f.Sections {
		name := s.Name
		if s.Anonymous {
			name = fmt.Sprintf("cfg%02x%04x", i, 0x5e0+i)
		}
		v := map[string]any{".name": name, ".type": s.Type, ".anonymous": s.Anonymous, ".index": i}
		for _, o := range s.Options {
			if o.IsList {
				v[o.Name] = o.Values
			} else {
				v[o.Name] = o.Values[0]
			}
		}
		out[name] = v
	}
	return out, nil
}

func uciFromValues(vals map[string]any) string {
	type sec struct {
		idx float64
		v   map[string]any
	}
	var ss []sec
	for _, x := range vals {
		if m, ok := x.(map[string]any); ok {
			idx, _ := m[".index"].(float64)
			ss = append(ss, sec{idx, m})
		}
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].idx < ss[j].idx })
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	var b strings.Builder
	for _, s := range ss {
		b.WriteString("config " + s.v[".type"].(string))
		if anon, _ := s.v[".anonymous"].(bool); !anon {
			b.WriteString(" " + q(s.v[".name"].(string)))
		}
		b.WriteString("\n")
		keys := make([]string, 0, len(s.v))
		for k := range s.v {
			if !strings.HasPrefix(k, ".") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch x := s.v[k].(type) {
			case string:
				b.WriteString("\toption " + k + " " + q(x) + "\n")
			case []any:
				for _, e := range x {
					b.WriteString("\tlist " + k + " " + q(fmt.Sprint(e)) + "\n")
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// luciServer serves the stand-in shell page, the app's real htdocs and /ubus.
func luciServer(t *testing.T, rpcd http.Handler) string {
	t.Helper()
	menu := map[string]struct {
		Title  string `json:"title"`
		Action struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"action"`
	}{}
	b, err := os.ReadFile(filepath.Join(luciApp, "root/usr/share/luci/menu.d/luci-app-voipgw.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &menu); err != nil {
		t.Fatalf("menu.d: %v", err)
	}
	var links []string
	keys := make([]string, 0, len(menu))
	for k := range menu {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m := menu[k]
		if m.Action.Type != "view" {
			continue
		}
		if _, err := os.Stat(filepath.Join(luciApp, "htdocs/luci-static/resources/view", m.Action.Path+".js")); err != nil {
			t.Errorf("menu entry %s names a view that does not exist: %v", k, err)
		}
		links = append(links, fmt.Sprintf(`<a href="/?view=%s" data-view="%s">%s</a>`, m.Action.Path, m.Action.Path, m.Title))
	}
	mux := http.NewServeMux()
	mux.Handle("/ubus", rpcd)
	mux.Handle("/luci-static/", http.FileServer(http.Dir(filepath.Join(luciApp, "htdocs"))))
	mux.Handle("/standin/", http.StripPrefix("/standin/", http.FileServer(http.Dir("testdata/luci"))))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, req *http.Request) {
		v := req.URL.Query().Get("view")
		fmt.Fprintf(w, `<!DOCTYPE html><html><head><meta charset="utf-8"><title>voipgw – LuCI</title>
<link rel="stylesheet" href="/standin/standin.css"><script src="/standin/standin.js"></script></head>
<body><header><span class="brand">OpenWrt</span><span>Services › VoIP gateway:</span> %s
<span class="note">stand-in for LuCI (test)</span></header>
<div id="maincontent"><div id="view"></div></div>
<script>document.querySelectorAll('header a').forEach(function(a){ if (a.dataset.view == %q) a.className = 'active'; }); standinShow(%q);</script>
</body></html>`, strings.Join(links, " "), v, v)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// checkPNG decodes a screenshot, checks its size and saves it under build/.
func checkPNG(t *testing.T, data []byte, name string, width, minHeight int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", name, err)
	}
	if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w != width || h < minHeight {
		t.Errorf("%s: %dx%d, want %d wide and at least %d high", name, w, h, width, minHeight)
	}
	// A rendered page is not one flat colour.
	first, differ := img.At(0, 0), 0
	for y := 0; y < img.Bounds().Dy(); y += 7 {
		for x := 0; x < img.Bounds().Dx(); x += 7 {
			if img.At(x, y) != first {
				differ++
			}
		}
	}
	if differ < 500 {
		t.Errorf("%s: almost blank (%d sampled pixels differ from the corner)", name, differ)
	}
	dir := filepath.Join("..", "..", "build", "luci")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", filepath.Join("build/luci", name), len(data))
}

func TestLuCIInBrowser(t *testing.T) {
	chromiumPath(t) // skip before building a lab when there is no browser
	start := time.Now()
	l, gw := luciLab(t)
	t.Logf("lab ready in %s", time.Since(start).Round(time.Millisecond))
	rpcd := newRPCDStandin(t, gw)
	base := luciServer(t, rpcd)
	b := startBrowser(t)
	const width = 1100
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	mac1, _ := lab.HWAddr(l.Phone1, "eth0")
	mac2, _ := lab.HWAddr(l.Phone2, "eth0")

	t.Run("status page", func(t *testing.T) {
		b.navigate(t, base+"/?view=voipgw/status")
		var page struct {
			Phones, Mappings, Learned, Counters, Scanners, SIP, Problems, Interface string
			MappingRows, ScannerItems                                               int
		}
		b.eval(t, `(function(){ var t = function(id){ var n = document.getElementById(id); return n ? n.innerText : ''; };
			return { Phones: t('voipgw-phones'), Mappings: t('voipgw-mappings'), Learned: t('voipgw-learned'),
				Counters: t('voipgw-counters'), Scanners: t('voipgw-scanners'), SIP: t('voipgw-sip'),
				Problems: t('voipgw-problems'), Interface: t('voipgw-interface'),
				MappingRows: document.querySelectorAll('#voipgw-mappings tr').length - 1,
				ScannerItems: document.querySelectorAll('#voipgw-scanners li').length }; })()`, &page)
		for _, c := range []struct{ what, in, want string }{
			{"phone1's MAC", page.Phones, mac1.String()},
			{"phone1's vendor", page.Phones, "yealink"},
			{"phone1's hostname, as text", page.Phones, phone1Hostname},
			{"phone2's MAC", page.Phones, mac2.String()},
			{"phone2's static lease", page.Phones, "192.0.2.50 (static)"},
			{"phone2's vendor", page.Phones, "gigaset"},
			{"phone1's mapping", page.Mappings, ap(lab.Phone1Addr.Addr(), 5062).String()},
			{"the learned address", page.Learned, lab.WildHost.String()},
			{"the learned name", page.Learned, "phone.wild.example"},
			{"the allowed counter", page.Counters, "allowed"},
			{"the scanners counter", page.Counters, "scanners detected"},
			{"the scanner", page.Scanners, lab.Scanner.String()},
			{"the interface", page.Interface, lab.GWVoIPIf},
			{"the SIP helper modules", page.SIP, "nf_conntrack_sip"},
			{"no problems", page.Problems, "OK: no problems"},
		} {
			if !strings.Contains(c.in, c.want) {
				t.Errorf("status page lacks %s (%q) in:\n%s", c.what, c.want, c.in)
			}
		}
		var markup int
		b.eval(t, "document.querySelectorAll('#voipgw-status b').length", &markup)
		if markup != 0 {
			t.Errorf("a phone's hostname was rendered as HTML (%d <b> elements)", markup)
		}
		if page.MappingRows != 2 || page.ScannerItems != 1 {
			t.Errorf("%d mapping rows, %d scanners; want 2 and 1", page.MappingRows, page.ScannerItems)
		}
		checkPNG(t, b.screenshot(t, width), "status.png", width, 800)
	})

	t.Run("diagnose button", func(t *testing.T) {
		b.eval(t, fmt.Sprintf(`document.getElementById('voipgw-stun').value = %q; document.getElementById('voipgw-sip-echo').value = %q;
			document.getElementById('voipgw-diagnose').click(); true`, ap(lab.Platform, lab.STUNPorts[0]), ap(lab.SIPEcho, 5060)), nil)
		b.waitFor(t, "the diagnose result", "document.querySelectorAll('#voipgw-diagnose-result .voipgw-check').length == 2", 45*time.Second)
		var res string
		b.eval(t, "document.getElementById('voipgw-diagnose-result').innerText", &res)
		t.Logf("diagnose from the gateway address:\n%s", res)
		if !strings.Contains(res, "stun "+ap(lab.Platform, lab.STUNPorts[0]).String()) || !strings.Contains(res, "EIM + EIF") ||
			!strings.Contains(res, "sip-echo "+ap(lab.SIPEcho, 5060).String()) || !strings.Contains(res, "no SIP ALG") {
			t.Errorf("diagnose result lacks the STUN test's steps:\n%s", res)
		}
		checkPNG(t, b.screenshot(t, width), "status-diagnose.png", width, 800)

		// The targets are remembered in the browser for the next visit.
		b.navigate(t, base+"/?view=voipgw/status")
		var kept string
		b.eval(t, "document.getElementById('voipgw-stun').value", &kept)
		if kept != ap(lab.Platform, lab.STUNPorts[0]).String() {
			t.Errorf("STUN target after a reload: %q", kept)
		}

		// Nothing typed in: the plugin answers with the CLI's usage message, shown in red.
		b.eval(t, `document.getElementById('voipgw-stun').value = ''; document.getElementById('voipgw-sip-echo').value = '';
			document.getElementById('voipgw-diagnose').click(); true`, nil)
		b.waitFor(t, "the usage message", "/name at least one check/.test(document.getElementById('voipgw-diagnose-result').innerText)", 15*time.Second)
	})

	t.Run("problems are red", func(t *testing.T) {
		// The config file changed after apply: status reports it as a problem.
		cfg, _ := os.ReadFile(gw.config)
		changed := strings.Replace(string(cfg), "option leasetime '1h'", "option leasetime '2h'", 1)
		if err := os.WriteFile(gw.config+".changed", []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		saved := gw.config
		gw.config = saved + ".changed"
		defer func() { gw.config = saved }()
		b.navigate(t, base+"/?view=voipgw/status")
		var bg, text string
		b.eval(t, "getComputedStyle(document.getElementById('voipgw-problems')).backgroundColor", &bg)
		b.eval(t, "document.getElementById('voipgw-problems').innerText", &text)
		if bg != "rgb(204, 0, 0)" || !strings.Contains(text, "Problems") || !strings.Contains(text, ": run voipgw apply") {
			t.Errorf("problems box: background %s, text:\n%s", bg, text)
		}
		checkPNG(t, b.screenshot(t, width), "status-problems.png", width, 800)
	})

	t.Run("config page", func(t *testing.T) {
		before, _ := os.ReadFile(gw.config)
		b.navigate(t, base+"/?view=voipgw/config")
		var device, dhcpStart, hostMAC string
		b.eval(t, "document.getElementById('widget.cbid.voipgw.voice.device').value", &device)
		b.eval(t, "document.getElementById('widget.cbid.voipgw.dhcp.start').value", &dhcpStart)
		b.eval(t, "document.getElementById('widget.cbid.voipgw.reception.mac').value", &hostMAC)
		if device != lab.GWVoIPIf || dhcpStart != "20" || hostMAC != mac2.String() {
			t.Errorf("form shows device %q, dhcp start %q, static lease MAC %q; want the config's %q, 20, %s", device, dhcpStart, hostMAC, lab.GWVoIPIf, mac2)
		}
		checkPNG(t, b.screenshot(t, width), "config.png", width, 900)

		// A bad VLAN id: the form's datatype passes (a number), voipgw validate refuses.
		b.eval(t, `document.getElementById('widget.cbid.voipgw.voice.vid').value = '5000'; document.getElementById('btn-save').click(); true`, nil)
		b.waitFor(t, "the validation error", "document.querySelector('.voipgw-error')", 15*time.Second)
		var msg string
		var marked bool
		b.eval(t, "document.querySelector('.voipgw-error').innerText", &msg)
		b.eval(t, "document.getElementById('widget.cbid.voipgw.voice.vid').classList.contains('cbi-input-invalid')", &marked)
		if want := "voipgw.voice.vid='5000': not a whole number from 1 to 4094"; msg != want {
			t.Errorf("error shown: %q, want the CLI's %q", msg, want)
		}
		if !marked {
			t.Errorf("the VLAN id field is not marked invalid")
		}
		if after, _ := os.ReadFile(gw.config); !bytes.Equal(after, before) {
			t.Errorf("the config changed although validation failed")
		}
		b.eval(t, "window.scrollTo(0,0); true", nil)
		checkPNG(t, b.screenshot(t, width), "config-error.png", width, 900)

		// A letter in a number field is the form's own datatype check (never sent).
		b.eval(t, `document.getElementById('widget.cbid.voipgw.voice.vid').value = '2x'; document.getElementById('btn-save').click(); true`, nil)
		b.waitFor(t, "the datatype error", "document.querySelectorAll('.voipgw-error').length >= 1 && /invalid/.test(document.querySelector('.voipgw-error').innerText)", 15*time.Second)

		// A valid change is validated, then saved.
		n := len(rpcd.calls)
		b.eval(t, `document.getElementById('widget.cbid.voipgw.voice.vid').value = '';
			document.getElementById('widget.cbid.voipgw.dhcp.limit').value = '12'; document.getElementById('btn-save').click(); true`, nil)
		b.waitFor(t, "the saved config", "document.getElementById('widget.cbid.voipgw.dhcp.limit') && !document.querySelector('.voipgw-error')", 15*time.Second)
		deadline := time.Now().Add(10 * time.Second)
		for {
			after, _ := os.ReadFile(gw.config)
			if strings.Contains(string(after), "option limit '12'") {
				if strings.Contains(string(after), "vid") {
					t.Errorf("the emptied VLAN id was saved:\n%s", after)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dhcp limit 12 not saved; calls %v; config:\n%s", rpcd.calls[n:], after)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := strings.Join(rpcd.calls[n:], " "); !strings.Contains(got, "voipgw.validate uci.standin_replace") {
			t.Errorf("calls for a valid save: %s, want validate before the write", got)
		}
		if out, err := gw.run("validate"); err != nil {
			t.Errorf("the config LuCI saved does not validate: %v\n%s", err, out)
		}
	})
	t.Logf("whole test %s", time.Since(start).Round(time.Millisecond))
}
