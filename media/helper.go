package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Event is a conntrack event of a media flow.
type Event struct {
	Flow    Flow
	Destroy bool // false: NEW
}

// Activity says which flows the phone sent on within the keep-alive interval,
// with the time left until that is no longer true.
type Activity interface {
	Active() (map[Flow]time.Duration, error)
}

// Sender sends one keep-alive for a flow. It returns ErrFlowGone when the flow's
// conntrack entry no longer exists: a keep-alive then would not refresh the
// phone's entry but create a new one from the router.
type Sender interface {
	Send(Flow) error
}

// ErrFlowGone: the flow's conntrack entry is gone (a DESTROY event was missed).
var ErrFlowGone = errors.New("conntrack entry gone")

// Helper is the keep-alive loop: conntrack events in, one timer, keep-alives out.
type Helper struct {
	Limits   Limits
	Events   <-chan Event // closed or failing source ends Run with an error
	Activity Activity
	Sender   Sender
	Log      *slog.Logger
	// Publish, if set, gets the counters after every change (cheap: called from
	// the loop; it must not block long).
	Publish func(Stats)

	mu    sync.Mutex
	stats Stats
}

// Stats returns the current counters.
func (h *Helper) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// Run follows flows until ctx ends (nil) or the event source fails (its error).
func (h *Helper) Run(ctx context.Context) error {
	if h.Limits.Interval <= 0 || h.Limits.MaxFlows <= 0 {
		return fmt.Errorf("keepalive: interval %s and max_flows %d must be positive", h.Limits.Interval, h.Limits.MaxFlows)
	}
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := newTracker(h.Limits)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := time.Time{}
	publish := func() {
		h.mu.Lock()
		h.stats = t.stats
		h.mu.Unlock()
		if h.Publish != nil {
			h.Publish(t.stats)
		}
	}
	publish()
	for {
		// One timer for all flows, set to the earliest deadline; none without flows.
		if next := t.next(); !next.Equal(armed) {
			timer.Stop()
			armed = next
			if !next.IsZero() {
				timer.Reset(time.Until(next))
			}
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-h.Events:
			if !ok {
				return errors.New("keepalive: conntrack event source closed")
			}
			before := t.stats
			if ev.Destroy {
				t.ended(ev.Flow)
			} else {
				t.started(ev.Flow, time.Now())
				if t.stats.DroppedCap != before.DroppedCap && t.stats.DroppedCap&(t.stats.DroppedCap-1) == 0 {
					// Logged at powers of two: a flood must not flood the log too.
					log.Warn("keepalive: max_flows reached; new media flows are not kept alive", "max_flows", h.Limits.MaxFlows, "dropped", t.stats.DroppedCap)
				}
			}
			if t.stats != before {
				publish()
			}
		case <-timer.C:
			armed = time.Time{}
			now := time.Now()
			if !t.anyDue(now) {
				continue
			}
			active, err := h.Activity.Active()
			if err != nil {
				// Without knowing who is silent, keep-alives for everyone due are the
				// safe side: an extra empty datagram costs nothing, a lost binding a call.
				t.stats.ActivityErrors++
				log.Warn("keepalive: read active media flows", "err", err)
				active = nil
			}
			for _, f := range t.tick(now, active) {
				switch err := h.Sender.Send(f); {
				case err == nil:
					t.stats.KeepalivesSent++
				case errors.Is(err, ErrFlowGone):
					t.ended(f)
				default:
					t.stats.SendErrors++
					log.Warn("keepalive: send", "phone", f.Phone, "remote", f.Remote, "err", err)
				}
			}
			publish()
		}
	}
}
