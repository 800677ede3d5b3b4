package main

import (
	"math"
	"testing"
)

func TestStats(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := spread([]float64{90, 100, 110}); got != 20 {
		t.Errorf("spread = %v, want 20", got)
	}
	pr := pairRatios([]float64{95, 100, 10}, []float64{100, 100, 0})
	if len(pr) != 2 || pr[0] != 0.95 || pr[1] != 1 {
		t.Errorf("pairRatios = %v", pr)
	}
	xs := []float64{0, 1, 2, 3}
	if got := slope(xs, []float64{1, 3, 5, 7}); math.Abs(got-2) > 1e-9 {
		t.Errorf("slope = %v, want 2", got)
	}
	if got := slope(xs, []float64{4, 4, 4, 4}); got != 0 {
		t.Errorf("flat slope = %v", got)
	}
}
