package bench

import (
	"slices"
	"time"
)

// Summary describes the repetitions of one workload by one contestant.
type Summary struct {
	N      int           `json:"n"`
	Median time.Duration `json:"median_ns"`
	Min    time.Duration `json:"min_ns"`
	Max    time.Duration `json:"max_ns"`
}

// Summarize returns the median and range of samples. The median of an even
// count is the mean of the two middle samples. An empty slice gives the
// zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{N: n, Median: med, Min: s[0], Max: s[n-1]}
}

// Spread is the range of the samples relative to their median: 0.1 means
// the slowest and fastest repetitions are 10% of the median apart. It is
// 0 for fewer than two samples or a zero median.
func (s Summary) Spread() float64 {
	if s.N < 2 || s.Median <= 0 {
		return 0
	}
	return float64(s.Max-s.Min) / float64(s.Median)
}

// Ratio is a's median over b's: how many times slower a is than b. It is 0
// when either has no samples.
func Ratio(a, b Summary) float64 {
	if a.N == 0 || b.N == 0 || b.Median <= 0 {
		return 0
	}
	return float64(a.Median) / float64(b.Median)
}
