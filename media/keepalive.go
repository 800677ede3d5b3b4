// Package media keeps the NAT bindings of the phones' media flows alive while a
// phone is silent (call on hold, mute with silence suppression): the keep-alive
// helper of `voipgw run`.
//
// A media flow is a UDP flow a phone of the VoIP network starts towards one of
// the media ports. The helper learns of flows from conntrack NEW and DESTROY
// events (no polling), asks which of its flows the phone has sent on within the
// keep-alive interval (voipgw's table tracks that per flow in media_out4/6), and
// for a silent flow sends, every interval, a keep-alive that carries the phone's
// own source address and port to the remote end. That packet has the flow's
// original 5-tuple, so it belongs to the phone's conntrack entry and leaves
// through the phone's NAT mapping: it refreshes the entry, the full-cone maps,
// and the remote's latch, exactly as a packet from the phone would.
//
// The keep-alive is the RFC 6263 §4.1 empty UDP datagram. The router does not see
// the phone's SSRC or negotiated payload types without parsing its RTP, and an
// RTP packet with a made-up SSRC can reset a receiver's jitter buffer or, under
// SRTP, fail authentication and count as an attack; an empty datagram is not RTP
// at all and is discarded by every RTP/RTCP stack, and it still traverses the
// same conntrack entry and mapping. The core here is pure (no clock, no kernel)
// so it is tested without root; Run wires it to the kernel.
package media

import (
	"container/heap"
	"net/netip"
	"time"
)

// Flow is a media flow as the phone started it.
type Flow struct {
	Phone  netip.AddrPort // the phone's address and port (inside the VoIP network)
	Remote netip.AddrPort // the media server's
}

// Stats are the helper's counters (published for voipgw status).
type Stats struct {
	Tracked        int    `json:"flows_tracked"`   // flows followed now
	Started        uint64 `json:"flows_started"`   // NEW events taken on
	KeepalivesSent uint64 `json:"keepalives_sent"` // keep-alive datagrams sent
	SendErrors     uint64 `json:"send_errors"`
	Ended          uint64 `json:"flows_ended"`     // DESTROY events (or entry gone) of followed flows
	GaveUp         uint64 `json:"flows_gave_up"`   // silent longer than max_idle: keep-alives stopped
	DroppedCap     uint64 `json:"dropped_for_cap"` // NEW events ignored: max_flows reached
	ActivityErrors uint64 `json:"activity_errors"` // failed reads of which flows are active
}

// Limits configure the core.
type Limits struct {
	Interval time.Duration // keep-alive interval (also the media_out set's timeout)
	MaxIdle  time.Duration // stop keep-alives after this much phone silence
	MaxFlows int
}

type flow struct {
	Flow
	due        time.Time // when to look at it next
	lastActive time.Time // the last time the phone is known to have sent on it
	idx        int       // in the heap
}

// tracker is the helper's state: the followed flows and one deadline heap, so
// an idle helper costs nothing and a busy one looks only at flows that are due.
type tracker struct {
	lim   Limits
	flows map[Flow]*flow
	due   dueHeap
	stats Stats
}

func newTracker(lim Limits) *tracker {
	return &tracker{lim: lim, flows: map[Flow]*flow{}}
}

// slack keeps the first look at a flow a little after its media_out element
// would expire, so the kernel's timer granularity cannot make it look alive
// for one more round.
func (t *tracker) slack() time.Duration { return max(t.lim.Interval/20, 10*time.Millisecond) }

// started takes on a new flow (conntrack NEW); the phone has just sent its first packet.
func (t *tracker) started(f Flow, now time.Time) {
	if _, ok := t.flows[f]; ok {
		return
	}
	if len(t.flows) >= t.lim.MaxFlows {
		t.stats.DroppedCap++
		return
	}
	fl := &flow{Flow: f, lastActive: now, due: now.Add(t.lim.Interval + t.slack())}
	t.flows[f] = fl
	heap.Push(&t.due, fl)
	t.stats.Started++
	t.stats.Tracked = len(t.flows)
}

// ended forgets a flow (conntrack DESTROY, or its entry is gone).
func (t *tracker) ended(f Flow) {
	fl, ok := t.flows[f]
	if !ok {
		return
	}
	t.remove(fl)
	t.stats.Ended++
}

func (t *tracker) remove(fl *flow) {
	heap.Remove(&t.due, fl.idx)
	delete(t.flows, fl.Flow)
	t.stats.Tracked = len(t.flows)
}

// next is when the earliest flow is due; zero without flows.
func (t *tracker) next() time.Time {
	if len(t.due) == 0 {
		return time.Time{}
	}
	return t.due[0].due
}

// anyDue says whether tick has work at now (and so whether the activity must be read).
func (t *tracker) anyDue(now time.Time) bool {
	return len(t.due) > 0 && !t.due[0].due.After(now)
}

// tick looks at every flow due at now. active maps the flows the phone sent on
// within the interval to the time left of that (the media_out element's expiry).
// It returns the flows that need a keep-alive now.
func (t *tracker) tick(now time.Time, active map[Flow]time.Duration) []Flow {
	var send []Flow
	for len(t.due) > 0 && !t.due[0].due.After(now) {
		fl := t.due[0]
		if left, ok := active[fl.Flow]; ok {
			// The phone sent interval-left ago; look again when that goes stale.
			fl.lastActive = now.Add(left - t.lim.Interval)
			fl.due = now.Add(max(left, 0) + t.slack())
		} else if now.Sub(fl.lastActive) >= t.lim.MaxIdle {
			t.remove(fl)
			t.stats.GaveUp++
			continue
		} else {
			send = append(send, fl.Flow)
			fl.due = now.Add(t.lim.Interval)
		}
		heap.Fix(&t.due, fl.idx)
	}
	return send
}

type dueHeap []*flow

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *dueHeap) Push(x any) {
	fl := x.(*flow)
	fl.idx = len(*h)
	*h = append(*h, fl)
}
func (h *dueHeap) Pop() any {
	old := *h
	fl := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return fl
}
