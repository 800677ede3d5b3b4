package media

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/voipgw/voipgw/config"
)

var (
	t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fA = Flow{Phone: netip.MustParseAddrPort("192.0.2.10:40000"), Remote: netip.MustParseAddrPort("203.0.113.10:50000")}
	fB = Flow{Phone: netip.MustParseAddrPort("192.0.2.11:40002"), Remote: netip.MustParseAddrPort("203.0.113.10:50002")}
	fC = Flow{Phone: netip.MustParseAddrPort("[2001:db8:20::10]:40000"), Remote: netip.MustParseAddrPort("[2001:db8:cafe::10]:50000")}
)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// The tracker's decisions over a scripted timeline (seconds from t0; interval 10 s,
// max_idle 35 s, max 2 flows).
func TestTracker(t *testing.T) {
	type step struct {
		at      float64
		start   []Flow
		end     []Flow
		active  map[Flow]time.Duration // nil: tick not called
		tick    bool
		send    []Flow
		tracked int
	}
	lim := Limits{Interval: 10 * time.Second, MaxIdle: 35 * time.Second, MaxFlows: 2}
	for _, tc := range []struct {
		name  string
		steps []step
		want  Stats
	}{
		{"a talking phone gets no keep-alives", []step{
			{at: 0, start: []Flow{fA}, tracked: 1},
			{at: 9, tick: true, tracked: 1}, // not due yet
			{at: 10.5, tick: true, active: map[Flow]time.Duration{fA: 9 * time.Second}, tracked: 1},
			{at: 19.6, tick: true, active: map[Flow]time.Duration{fA: 8 * time.Second}, tracked: 1},
		}, Stats{Tracked: 1, Started: 1}},
		{"a silent phone gets one per interval, until max_idle", []step{
			{at: 0, start: []Flow{fA}, tracked: 1},
			{at: 10.5, tick: true, send: []Flow{fA}, tracked: 1},
			{at: 15, tick: true, tracked: 1}, // not due
			{at: 20.5, tick: true, send: []Flow{fA}, tracked: 1},
			{at: 30.5, tick: true, send: []Flow{fA}, tracked: 1},
			{at: 40.5, tick: true, tracked: 0}, // silent 40.5 s > max_idle
		}, Stats{Tracked: 0, Started: 1, GaveUp: 1}},
		{"a phone that talks again resets max_idle", []step{
			{at: 0, start: []Flow{fA}, tracked: 1},
			{at: 10.5, tick: true, send: []Flow{fA}, tracked: 1},
			{at: 20.5, tick: true, active: map[Flow]time.Duration{fA: 5 * time.Second}, tracked: 1},
			{at: 26.1, tick: true, send: []Flow{fA}, tracked: 1}, // last active at 15.5, due at 15.5 + 10 + slack
			{at: 36.1, tick: true, send: []Flow{fA}, tracked: 1},
			{at: 46.1, tick: true, send: []Flow{fA}, tracked: 1},
			{at: 56.1, tick: true, tracked: 0},
		}, Stats{Started: 1, GaveUp: 1}},
		{"cap, duplicates, end", []step{
			{at: 0, start: []Flow{fA, fB, fA, fC}, tracked: 2},
			{at: 1, end: []Flow{fA, fC}, tracked: 1},
			{at: 2, start: []Flow{fC}, tracked: 2},
			{at: 10.5, tick: true, send: []Flow{fB}, tracked: 2},
			{at: 12.5, tick: true, send: []Flow{fC}, tracked: 2},
		}, Stats{Tracked: 2, Started: 3, Ended: 1, DroppedCap: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(lim)
			for i, s := range tc.steps {
				for _, f := range s.start {
					tr.started(f, at(s.at))
				}
				for _, f := range s.end {
					tr.ended(f)
				}
				if s.tick {
					var got []Flow
					if tr.anyDue(at(s.at)) {
						got = tr.tick(at(s.at), s.active)
					}
					if !equalFlows(got, s.send) {
						t.Errorf("step %d (t=%v): sent %v, want %v", i, s.at, got, s.send)
					}
				}
				if len(tr.flows) != s.tracked || tr.due.Len() != s.tracked {
					t.Errorf("step %d: tracking %d (heap %d), want %d", i, len(tr.flows), tr.due.Len(), s.tracked)
				}
				if n := tr.next(); s.tracked > 0 && !n.After(at(s.at)) {
					t.Errorf("step %d: next deadline %v is not after now", i, n.Sub(t0))
				}
			}
			if tr.stats != tc.want {
				t.Errorf("stats %+v, want %+v", tr.stats, tc.want)
			}
		})
	}
}

func equalFlows(a, b []Flow) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// An element checked right at its expiry, still reported with no time left, must
// not make the tracker spin on the same deadline.
func TestTrackerNoSpinAtExpiry(t *testing.T) {
	tr := newTracker(Limits{Interval: time.Second, MaxIdle: time.Hour, MaxFlows: 1})
	tr.started(fA, t0)
	now := tr.next()
	tr.tick(now, map[Flow]time.Duration{fA: 0})
	if !tr.next().After(now) {
		t.Fatalf("next deadline %v not after %v", tr.next(), now)
	}
}

func TestPacket(t *testing.T) {
	for _, f := range []Flow{fA, fC} {
		p, err := Packet(f)
		if err != nil {
			t.Fatal(err)
		}
		var udp, src, dst []byte
		if f.Phone.Addr().Is4() {
			if len(p) != 28 || p[0] != 0x45 || p[9] != 17 || binary.BigEndian.Uint16(p[2:]) != 28 {
				t.Fatalf("IPv4 header % x", p[:20])
			}
			if fold(checksumAdd(0, p[:20])) != 0xffff {
				t.Errorf("IPv4 header checksum wrong")
			}
			udp, src, dst = p[20:], p[12:16], p[16:20]
		} else {
			if len(p) != 48 || p[0]>>4 != 6 || p[6] != 17 || binary.BigEndian.Uint16(p[4:]) != 8 {
				t.Fatalf("IPv6 header % x", p[:40])
			}
			udp, src, dst = p[40:], p[8:24], p[24:40]
		}
		if string(src) != string(f.Phone.Addr().AsSlice()) || string(dst) != string(f.Remote.Addr().AsSlice()) {
			t.Errorf("addresses %x → %x", src, dst)
		}
		if binary.BigEndian.Uint16(udp[0:]) != f.Phone.Port() || binary.BigEndian.Uint16(udp[2:]) != f.Remote.Port() || binary.BigEndian.Uint16(udp[4:]) != 8 {
			t.Errorf("UDP header % x", udp)
		}
		sum := checksumAdd(checksumAdd(0, src), dst) + 17 + 8
		if fold(checksumAdd(sum, udp)) != 0xffff {
			t.Errorf("UDP checksum wrong")
		}
	}
	for _, bad := range []Flow{{}, {Phone: fA.Phone, Remote: fC.Remote}} {
		if _, err := Packet(bad); err == nil {
			t.Errorf("Packet(%v) accepted", bad)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	f := Filter{Subnets: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("2001:db8:20::/64")},
		Ports: []config.PortSpan{{First: 40000, Last: 65000}}}
	ct := func(proto uint8, src, dst string, sp, dp uint16) *conntrack.Flow {
		fl := conntrack.NewFlow(proto, 0, netip.MustParseAddr(src), netip.MustParseAddr(dst), sp, dp, 0, 0)
		return &fl
	}
	for _, tc := range []struct {
		name string
		in   *conntrack.Flow
		want Flow
		ok   bool
	}{
		{"phone media", ct(17, "192.0.2.10", "203.0.113.10", 40000, 50000), fA, true},
		{"phone media v6", ct(17, "2001:db8:20::10", "2001:db8:cafe::10", 40000, 50000), fC, true},
		{"tcp", ct(6, "192.0.2.10", "203.0.113.10", 40000, 50000), Flow{}, false},
		{"sip port", ct(17, "192.0.2.10", "203.0.113.10", 5060, 5060), Flow{}, false},
		{"not the VoIP network", ct(17, "192.0.2.130", "203.0.113.10", 40000, 50000), Flow{}, false},
		{"inbound", ct(17, "203.0.113.10", "198.51.100.2", 50000, 40000), Flow{}, false},
		{"nil", nil, Flow{}, false},
	} {
		got, ok := f.Match(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

type fakeActivity struct{ err error }

func (a fakeActivity) Active() (map[Flow]time.Duration, error) { return nil, a.err }

type fakeSender struct {
	mu   sync.Mutex
	sent chan Flow
	gone map[Flow]bool
}

func (s *fakeSender) Send(f Flow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone[f] {
		return ErrFlowGone
	}
	s.sent <- f
	return nil
}

// Run end to end with fakes: a silent flow gets keep-alives, a flow whose entry is
// gone is forgotten, a closed event source ends Run with an error.
func TestHelperRun(t *testing.T) {
	events := make(chan Event, 4)
	snd := &fakeSender{sent: make(chan Flow, 16), gone: map[Flow]bool{fB: true}}
	h := &Helper{Limits: Limits{Interval: 20 * time.Millisecond, MaxIdle: time.Hour, MaxFlows: 8},
		Events: events, Activity: fakeActivity{err: errors.New("no table")}, Sender: snd}
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background()) }()
	events <- Event{Flow: fA}
	events <- Event{Flow: fB}
	for n := 0; n < 2; n++ {
		select {
		case f := <-snd.sent:
			if f != fA {
				t.Fatalf("keep-alive for %v", f)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no keep-alive")
		}
	}
	close(events)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after its event source closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	st := h.Stats()
	if st.Started != 2 || st.Ended != 1 || st.Tracked != 1 || st.KeepalivesSent < 2 || st.ActivityErrors == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestHelperRunRejectsBadLimits(t *testing.T) {
	h := &Helper{Limits: Limits{}}
	if err := h.Run(context.Background()); err == nil {
		t.Fatal("zero limits accepted")
	}
}
