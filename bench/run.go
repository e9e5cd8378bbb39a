package bench

import (
	"context"
	"fmt"
	"time"
)

// Status says how a contestant fared in a workload.
type Status string

const (
	// StatusOK means the samples are valid.
	StatusOK Status = "ok"
	// StatusUnavailable means the contestant, or the workload's tool or
	// command, does not work here; Err says why.
	StatusUnavailable Status = "unavailable"
	// StatusFailed means a measured repetition failed; Err says how.
	StatusFailed Status = "failed"
	// StatusNA means the workload means nothing for the contestant (cp -a
	// has no mount to grep through).
	StatusNA Status = "n/a"
)

// Result is one contestant's measurements of one workload.
type Result struct {
	Workload   string          `json:"workload"`
	Contestant string          `json:"contestant"`
	Status     Status          `json:"status"`
	Err        string          `json:"error,omitempty"`
	Samples    []time.Duration `json:"samples_ns,omitempty"`
	Summary    Summary         `json:"summary"`
	// Requests are the FUSE requests of one extra repetition, by
	// operation (--requests), and RequestsErr why they are missing.
	// (No omitempty: {} is a count of none, null no count.)
	Requests    map[string]int64 `json:"requests"`
	RequestsErr string           `json:"requests_error,omitempty"`
}

// RunOptions say how many times each workload runs.
type RunOptions struct {
	// Warmup repetitions run first and are not counted.
	Warmup int
	// Reps is how many repetitions are counted.
	Reps int
	// SlowReps, when positive, is the count for a contestant whose first
	// counted repetition took longer than Slow, set-up and clean-up
	// included: long workloads get fewer repetitions so the whole bench
	// fits its time.
	SlowReps int
	Slow     time.Duration
	// VerySlowReps and VerySlow are a second, lower tier of the same.
	VerySlowReps int
	VerySlow     time.Duration
	// Progress, when set, is told what runs.
	Progress func(format string, args ...any)
}

// Run measures every workload with every contestant, interleaved, and
// returns one Result per pair in workload order, then contestant order.
// A contestant that is unavailable, or whose warm-up fails, is reported
// with the error and the bench goes on. Kept mounts are released at the
// end of each phase. Run stops early only when ctx ends; then the
// results so far are returned with ctx's error.
func Run(ctx context.Context, e *Env, ws []Workload, cs []*Contestant, opt RunOptions) ([]Result, error) {
	progress := opt.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	var all []Result
	phase := ""
	defer e.ReleaseKept()
	for wi := range ws {
		w := &ws[wi]
		if w.Phase != phase {
			if err := e.ReleaseKept(); err != nil {
				progress("cleanup after phase %s: %v", phase, err)
			}
			phase = w.Phase
		}
		res := make([]Result, len(cs))
		var live []int
		for i, c := range cs {
			res[i] = Result{Workload: w.Name, Contestant: c.Name, Status: StatusOK}
			switch {
			case !w.Applies(c):
				res[i].Status = StatusNA
			case c.Unavailable != nil:
				res[i].Status, res[i].Err = StatusUnavailable, c.Unavailable.Error()
			case w.Cold && !e.Root:
				res[i].Status, res[i].Err = StatusUnavailable, "dropping the caches needs root"
			default:
				live = append(live, i)
			}
		}
		progress("%s (%d contestants)", w.Name, len(live))
		t0 := time.Now()
		// Warm-up: a failure here means the contestant cannot do the
		// workload at all.
		warmup := opt.Warmup
		if w.NoWarmup {
			warmup = 0
		}
		for r := 0; r < warmup; r++ {
			for _, i := range rotate(live, r) {
				if res[i].Status != StatusOK {
					continue
				}
				if _, err := w.Rep(ctx, e, cs[i], -1-r); err != nil {
					if ctx.Err() != nil {
						return append(all, interrupted(res)...), ctx.Err()
					}
					res[i].Status, res[i].Err = StatusUnavailable, err.Error()
					progress("  %s: unavailable: %v", cs[i].Name, err)
				}
			}
		}
		want := make([]int, len(cs))
		for _, i := range live {
			want[i] = opt.Reps
		}
		for r := 0; ; r++ {
			ran := false
			// Without a warm-up, a failure of the first repetition means
			// the contestant cannot do the workload.
			firstFails := warmup == 0 && r == 0
			for _, i := range rotate(live, r) {
				if res[i].Status != StatusOK || r >= want[i] {
					continue
				}
				ran = true
				t0 := time.Now()
				d, err := w.Rep(ctx, e, cs[i], r)
				wall := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return append(all, interrupted(res)...), ctx.Err()
					}
					if firstFails {
						res[i].Status, res[i].Err = StatusUnavailable, err.Error()
						progress("  %s: unavailable: %v", cs[i].Name, err)
						continue
					}
					res[i].Status, res[i].Err = StatusFailed, fmt.Sprintf("repetition %d: %v", r+1, err)
					progress("  %s: failed: %v", cs[i].Name, err)
					continue
				}
				res[i].Samples = append(res[i].Samples, d)
				if r == 0 && opt.SlowReps > 0 && max(d, wall) > opt.Slow {
					want[i] = min(want[i], opt.SlowReps)
				}
				if r == 0 && opt.VerySlowReps > 0 && max(d, wall) > opt.VerySlow {
					want[i] = min(want[i], opt.VerySlowReps)
				}
			}
			if !ran {
				break
			}
		}
		for i := range res {
			if res[i].Status == StatusOK {
				res[i].Summary = Summarize(res[i].Samples)
			}
		}
		// The user-facing workloads mount through the ovl binary: the
		// bench does not see their mounts to count.
		if e.Requests != nil && !w.NoCount && !w.OvlOnly {
			for _, i := range live {
				if res[i].Status != StatusOK || !cs[i].FUSE {
					continue
				}
				counts, err := e.countedRep(ctx, w, cs[i], len(res[i].Samples))
				if ctx.Err() != nil {
					return append(all, interrupted(res)...), ctx.Err()
				}
				if err != nil {
					res[i].RequestsErr = err.Error()
					progress("  %s: no request counts: %v", cs[i].Name, err)
					continue
				}
				res[i].Requests = counts
			}
		}
		progress("  done in %v", time.Since(t0).Round(100*time.Millisecond))
		all = append(all, res...)
	}
	return all, nil
}

// rotate returns idx rotated left by r, so that each repetition starts
// with another contestant.
func rotate(idx []int, r int) []int {
	if len(idx) == 0 {
		return nil
	}
	k := r % len(idx)
	return append(append([]int(nil), idx[k:]...), idx[:k]...)
}

// interrupted marks the results of a workload cut short by the end of
// the context: what has samples is summarized, the rest failed.
func interrupted(res []Result) []Result {
	for i := range res {
		if res[i].Status != StatusOK {
			continue
		}
		if len(res[i].Samples) == 0 {
			res[i].Status, res[i].Err = StatusFailed, "interrupted before a repetition ended"
			continue
		}
		res[i].Summary = Summarize(res[i].Samples)
	}
	return res
}
