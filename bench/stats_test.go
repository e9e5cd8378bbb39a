package bench

import (
	"testing"
	"time"
)

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    Summary
		spread  float64
	}{
		{"empty", nil, Summary{}, 0},
		{"one", ms(7), Summary{N: 1, Median: 7 * time.Millisecond, Min: 7 * time.Millisecond, Max: 7 * time.Millisecond}, 0},
		{"odd unsorted", ms(30, 10, 20), Summary{N: 3, Median: 20 * time.Millisecond, Min: 10 * time.Millisecond, Max: 30 * time.Millisecond}, 1},
		{"even is mean of middle two", ms(40, 10, 20, 30), Summary{N: 4, Median: 25 * time.Millisecond, Min: 10 * time.Millisecond, Max: 40 * time.Millisecond}, 1.2},
		{"outlier does not move the median", ms(100, 101, 99, 1000, 100), Summary{N: 5, Median: 100 * time.Millisecond, Min: 99 * time.Millisecond, Max: 1000 * time.Millisecond}, 9.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.samples)
			if got != tc.want {
				t.Fatalf("Summarize(%v) = %+v, want %+v", tc.samples, got, tc.want)
			}
			if s := got.Spread(); s < tc.spread-1e-9 || s > tc.spread+1e-9 {
				t.Errorf("Spread() = %v, want %v", s, tc.spread)
			}
		})
	}
}

func TestSummarizeKeepsInput(t *testing.T) {
	in := ms(3, 1, 2)
	Summarize(in)
	if in[0] != 3*time.Millisecond || in[1] != time.Millisecond {
		t.Fatalf("Summarize reordered its input: %v", in)
	}
}

func TestRatio(t *testing.T) {
	a, b := Summarize(ms(300)), Summarize(ms(100))
	if got := Ratio(a, b); got != 3 {
		t.Errorf("Ratio = %v, want 3", got)
	}
	if got := Ratio(a, Summary{}); got != 0 {
		t.Errorf("Ratio to nothing = %v, want 0", got)
	}
}

func TestRotate(t *testing.T) {
	idx := []int{4, 5, 6}
	for r, want := range [][]int{{4, 5, 6}, {5, 6, 4}, {6, 4, 5}, {4, 5, 6}} {
		got := rotate(idx, r)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("rotate(%v, %d) = %v, want %v", idx, r, got, want)
			}
		}
	}
	if rotate(nil, 3) != nil {
		t.Error("rotate(nil) is not nil")
	}
}

func TestFioRuntime(t *testing.T) {
	report := []byte(`note: both iodepth >= 1 and synchronous I/O engine are selected
{"fio version": "fio-3.33", "jobs": [{"jobname": "seqread", "error": 0, "job_runtime": 443, "read": {"runtime": 443}}]}`)
	got, err := fioRuntime(report)
	if err != nil || got != 443*time.Millisecond {
		t.Fatalf("fioRuntime = %v, %v; want 443ms", got, err)
	}
	if _, err := fioRuntime([]byte(`{"jobs": [{"error": 5, "job_runtime": 1}]}`)); err == nil {
		t.Error("a failed fio job was read as a time")
	}
	if _, err := fioRuntime([]byte(`fio: no such file`)); err == nil {
		t.Error("garbage was read as a time")
	}
}
