// Package nfhold keeps NETLINK_NETFILTER sockets open until a run is done with
// them.
//
// Why: a commit that deletes anything from nf_tables (a set element, a rule) frees
// what it deleted from a work item that first waits for an RCU grace period
// (nf_tables_trans_destroy_work -> synchronize_rcu, 10-15 ms with HZ=250). The
// commit itself returns at once, but the release of ANY NETLINK_NETFILTER socket
// of that network namespace - nftables or ctnetlink - flushes that work item
// (netlink_release -> nft_rcv_nl_event -> flush_work) and so waits out the rest of
// the grace period. Closing the sockets of a run at its end instead of after each
// step lets the grace period pass while the run does its other work (BENCHMARKS.md
// §3); only the remainder, if any, is waited for at the end.
package nfhold

import (
	"context"
	"errors"
	"io"
	"sync"
)

// Holder collects sockets (any io.Closer) until Release. The zero value is ready;
// a nil *Holder closes at once.
type Holder struct {
	mu   sync.Mutex
	held []io.Closer
}

// Close closes c now if h is nil, else keeps it open until Release.
func (h *Holder) Close(c io.Closer) error {
	if h == nil {
		return c.Close()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = append(h.held, c)
	return nil
}

// Release closes what is held, in order, and forgets it.
func (h *Holder) Release() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	var errs []error
	for _, c := range held {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Func adapts a close function.
type Func func() error

func (f Func) Close() error { return f() }

type ctxKey struct{}

// With returns ctx carrying h, for code that receives a context.
func With(ctx context.Context, h *Holder) context.Context {
	return context.WithValue(ctx, ctxKey{}, h)
}

// From is the Holder ctx carries, or nil (close at once).
func From(ctx context.Context) *Holder {
	h, _ := ctx.Value(ctxKey{}).(*Holder)
	return h
}
