package main

import (
	"fmt"
	"slices"
)

// median of xs (mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread is (max-min)/median in percent: how much the rounds of one variant disagree.
func spread(xs []float64) float64 {
	m := median(xs)
	if len(xs) == 0 || m == 0 {
		return 0
	}
	return (slices.Max(xs) - slices.Min(xs)) / m * 100
}

// pairRatios are the per-round ratios a[i]/b[i] of two variants measured side by
// side in the same round; their median is a second estimate next to the ratio of
// the medians, less sensitive to load that drifts between rounds.
func pairRatios(a, b []float64) []float64 {
	var out []float64
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

// series is one variant's measurements, one per round.
type series struct {
	name string
	unit string
	v    []float64
}

func (s *series) summary() string {
	return fmt.Sprintf("%-28s median %12.1f %-6s min %12.1f  max %12.1f  spread %5.1f%%  n=%d",
		s.name, median(s.v), s.unit, slices.Min(s.v), slices.Max(s.v), spread(s.v), len(s.v))
}

// ratioLine prints median(a)/median(b), the median of the per-round ratios and
// their range, and whether the goal is met (cmp: ">=" or "<="; "": no goal) and by
// how much the ratio is above (+) or below (−) it, relative to the goal.
func ratioLine(label string, a, b *series, cmp string, goal float64) string {
	r := median(a.v) / median(b.v)
	pr := pairRatios(a.v, b.v)
	head := fmt.Sprintf("RATIO %-34s %.3f (per-round median %.3f, range %.3f–%.3f)", label, r, median(pr), slices.Min(pr), slices.Max(pr))
	if cmp == "" {
		return head
	}
	met := (cmp == ">=" && r >= goal) || (cmp == "<=" && r <= goal)
	verdict := "MET"
	if !met {
		verdict = "MISSED"
	}
	return fmt.Sprintf("%s  goal %s %.2f: %s (%+.1f%%)", head, cmp, goal, verdict, (r/goal-1)*100)
}

// slope is the least-squares slope of ys over xs (units of y per unit of x).
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
