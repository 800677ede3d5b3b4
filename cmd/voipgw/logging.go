package main

import (
	"context"
	"io"
	"log/slog"
)

// newLogger writes logfmt lines without timestamps (logread and journald add their
// own). For the daemon, records below WARN go to stdout and the rest to stderr:
// procd logs a service's stdout as daemon.info and stderr as daemon.err, so
// `logread -p info`/`-p err` then mean what they say.
func newLogger(stdout, stderr io.Writer, split bool) *slog.Logger {
	opts := &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}
	errH := slog.NewTextHandler(stderr, opts)
	if !split {
		return slog.New(errH)
	}
	return slog.New(levelSplit{low: slog.NewTextHandler(stdout, opts), high: errH})
}

// levelSplit sends records below WARN to low and the others to high.
type levelSplit struct{ low, high slog.Handler }

func (h levelSplit) pick(l slog.Level) slog.Handler {
	if l < slog.LevelWarn {
		return h.low
	}
	return h.high
}

func (h levelSplit) Enabled(ctx context.Context, l slog.Level) bool {
	return h.pick(l).Enabled(ctx, l)
}

func (h levelSplit) Handle(ctx context.Context, r slog.Record) error {
	return h.pick(r.Level).Handle(ctx, r)
}

func (h levelSplit) WithAttrs(as []slog.Attr) slog.Handler {
	return levelSplit{low: h.low.WithAttrs(as), high: h.high.WithAttrs(as)}
}

func (h levelSplit) WithGroup(name string) slog.Handler {
	return levelSplit{low: h.low.WithGroup(name), high: h.high.WithGroup(name)}
}
