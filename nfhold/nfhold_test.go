package nfhold

import (
	"context"
	"errors"
	"testing"
)

func TestHolder(t *testing.T) {
	var order []int
	closer := func(i int, err error) Func {
		return func() error { order = append(order, i); return err }
	}
	boom := errors.New("boom")

	// nil: closes at once.
	var nilH *Holder
	if err := nilH.Close(closer(0, nil)); err != nil || len(order) != 1 {
		t.Fatalf("nil holder: err %v, closed %v", err, order)
	}
	if err := nilH.Release(); err != nil {
		t.Fatal(err)
	}

	h := &Holder{}
	ctx := With(context.Background(), h)
	if From(ctx) != h || From(context.Background()) != nil {
		t.Fatal("From does not give back the holder of With (or gives one without)")
	}
	for i := 1; i <= 3; i++ {
		var err error
		if i == 2 {
			err = boom
		}
		if err := From(ctx).Close(closer(i, err)); err != nil {
			t.Fatal(err)
		}
	}
	if len(order) != 1 {
		t.Fatalf("held closers ran before Release: %v", order)
	}
	if err := h.Release(); !errors.Is(err, boom) {
		t.Fatalf("Release: %v, want the error of closer 2", err)
	}
	if want := []int{0, 1, 2, 3}; len(order) != 4 || order[1] != 1 || order[2] != 2 || order[3] != 3 {
		t.Fatalf("closed %v, want %v", order, want)
	}
	if err := h.Release(); err != nil || len(order) != 4 {
		t.Fatalf("second Release closed again: %v %v", err, order)
	}
}
