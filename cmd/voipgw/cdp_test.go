package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// A headless Chromium driven over the DevTools protocol: just the calls the LuCI
// browser test needs (navigate, evaluate, screenshot). Test code only.

type browser struct {
	cmd  *exec.Cmd
	conn net.Conn
	rw   io.ReadWriter

	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpReply
	closed  chan struct{}
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// chromiumPath finds Debian's chromium, or skips the test saying how to get it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("skipping: chromium is not installed (apt-get install chromium; scripts/deps installs it)")
	return ""
}

var devtoolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

func startBrowser(t *testing.T) *browser {
	t.Helper()
	bin := chromiumPath(t)
	profile := t.TempDir()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
		"--hide-scrollbars", "--font-render-hinting=none", "--user-data-dir="+profile, "--remote-debugging-port=0", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its zygote and renderers go with it
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{cmd: cmd, pending: map[int]chan cdpReply{}, closed: make(chan struct{})}
	t.Cleanup(b.close)
	found := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsURL.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
			if log.Len() < 4096 {
				log.WriteString(sc.Text() + "\n")
			}
		}
	}()
	var browserURL string
	select {
	case browserURL = <-found:
	case <-time.After(20 * time.Second):
		t.Fatalf("chromium did not open its DevTools port within 20 s:\n%s", log.String())
	}
	// The page target of the about:blank tab.
	host := strings.TrimPrefix(browserURL, "ws://")
	host = host[:strings.Index(host, "/")]
	resp, err := http.Get("http://" + host + "/json/list")
	if err != nil {
		t.Fatalf("devtools target list: %v", err)
	}
	defer resp.Body.Close()
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		t.Fatalf("devtools target list: %v", err)
	}
	pageURL := ""
	for _, tg := range targets {
		if tg.Type == "page" {
			pageURL = tg.WS
			break
		}
	}
	if pageURL == "" {
		t.Fatalf("no page target in %+v", targets)
	}
	conn, br, _, err := ws.Dial(context.Background(), pageURL)
	if err != nil {
		t.Fatalf("devtools websocket: %v", err)
	}
	b.conn = conn
	var r io.Reader = conn
	if br != nil {
		r = br
	}
	b.rw = struct {
		io.Reader
		io.Writer
	}{r, conn}
	go b.readLoop()
	b.call(t, "Page.enable", nil, nil)
	b.call(t, "Runtime.enable", nil, nil)
	return b
}

func (b *browser) readLoop() {
	defer close(b.closed)
	for {
		data, _, err := wsutil.ReadServerData(b.rw)
		if err != nil {
			return
		}
		var msg struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(data, &msg) != nil || msg.ID == 0 {
			continue // events
		}
		b.mu.Lock()
		ch := b.pending[msg.ID]
		delete(b.pending, msg.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- msg.cdpReply
		}
	}
}

// call sends one DevTools command and decodes its result into out (may be nil).
func (b *browser) call(t *testing.T, method string, params, out any) {
	t.Helper()
	if err := b.callErr(method, params, out); err != nil {
		t.Fatal(err)
	}
}

func (b *browser) callErr(method string, params, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if err := wsutil.WriteClientText(b.conn, msg); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-b.closed:
		return fmt.Errorf("%s: the browser closed the connection", method)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s: no answer within 30 s", method)
	}
}

// eval runs a JavaScript expression in the page (promises awaited) and decodes
// its value into out.
func (b *browser) eval(t *testing.T, expr string, out any) {
	t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	b.call(t, "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &r)
	if r.Exception != nil {
		t.Fatalf("evaluate %q: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			t.Fatalf("evaluate %q: %v (%s)", expr, err, r.Result.Value)
		}
	}
}

// waitFor polls a JavaScript condition (every 100 ms) until it is true. Errors
// count as false: the page may be between two documents.
func (b *browser) waitFor(t *testing.T, what, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var r struct {
			Result struct {
				Value bool `json:"value"`
			} `json:"result"`
		}
		if err := b.callErr("Runtime.evaluate", map[string]any{"expression": "!!(" + cond + ")", "returnByValue": true}, &r); err == nil && r.Result.Value {
			return
		}
		if time.Now().After(deadline) {
			var body string
			b.eval(t, "document.body ? document.body.innerText.slice(0, 2000) : ''", &body)
			t.Fatalf("timed out after %s waiting for %s; the page says:\n%s", timeout, what, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// navigate loads url and waits until the stand-in has rendered its view.
func (b *browser) navigate(t *testing.T, url string) {
	t.Helper()
	b.call(t, "Page.navigate", map[string]any{"url": url}, nil)
	b.waitFor(t, url, fmt.Sprintf("location.href == %q && document.body && document.body.dataset.rendered", url), 20*time.Second)
	var errText string
	b.eval(t, "(document.getElementById('standin-error')||{}).textContent||''", &errText)
	if errText != "" {
		t.Fatalf("the view failed: %s", errText)
	}
}

// screenshot sizes the viewport to the whole page (width fixed) and returns a PNG.
func (b *browser) screenshot(t *testing.T, width int) []byte {
	t.Helper()
	// The page's own height, not that of the last screenshot's viewport.
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": 600, "deviceScaleFactor": 1, "mobile": false}, nil)
	var h int
	b.eval(t, "Math.ceil(document.documentElement.scrollHeight)", &h)
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": h, "deviceScaleFactor": 1, "mobile": false}, nil)
	var r struct {
		Data string `json:"data"`
	}
	b.call(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	return png
}

func (b *browser) close() {
	if b.conn != nil {
		b.conn.Close()
	}
	if b.cmd.Process != nil {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL) // the process group this test started
		b.cmd.Wait()
	}
}
