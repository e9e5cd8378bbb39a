package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeContestants are three mountable contestants, one unavailable, and a
// plain copy; Run never mounts them in these tests.
func fakeContestants() []*Contestant {
	return []*Contestant{
		{Name: "a"}, {Name: "b"}, {Name: "c"},
		{Name: "down", Unavailable: errors.New("no such tool")},
		{Name: "copy", Peer: true, SnapshotOnly: true},
	}
}

func TestRunInterleavesAndReports(t *testing.T) {
	var calls []string
	rec := func(fail map[string]int) func(context.Context, *Env, *Contestant, int) (time.Duration, error) {
		return func(_ context.Context, _ *Env, c *Contestant, rep int) (time.Duration, error) {
			calls = append(calls, fmt.Sprintf("%s%d", c.Name, rep))
			if r, ok := fail[c.Name]; ok && r == rep {
				return 0, errors.New("boom")
			}
			return time.Duration(rep+1) * time.Millisecond, nil
		}
	}
	ws := []Workload{
		{Name: "w1", Rep: rec(nil)},
		{Name: "w2", Rep: rec(map[string]int{"a": -1, "b": 1}), Snapshot: true},
	}
	e := &Env{Jan: &Janitor{}}
	res, err := Run(context.Background(), e, ws, fakeContestants(), RunOptions{Warmup: 1, Reps: 3})
	if err != nil {
		t.Fatal(err)
	}
	// w1: warm-up, then repetitions round-robin, each starting one
	// contestant later. down is never called, copy is n/a.
	wantW1 := "a-1 b-1 c-1 a0 b0 c0 b1 c1 a1 c2 a2 b2"
	// w2: a fails its warm-up (unavailable, never measured), b fails its
	// second repetition (failed), copy takes part (snapshot workload).
	wantW2 := "a-1 b-1 c-1 copy-1 b0 c0 copy0 b1 c1 copy1 c2 copy2"
	got := strings.Join(calls, " ")
	if got != wantW1+" "+wantW2 {
		t.Fatalf("call order:\n got %s\nwant %s", got, wantW1+" "+wantW2)
	}
	want := map[[2]string]Status{
		{"w1", "a"}: StatusOK, {"w1", "b"}: StatusOK, {"w1", "c"}: StatusOK,
		{"w1", "down"}: StatusUnavailable, {"w1", "copy"}: StatusNA,
		{"w2", "a"}: StatusUnavailable, {"w2", "b"}: StatusFailed, {"w2", "c"}: StatusOK,
		{"w2", "down"}: StatusUnavailable, {"w2", "copy"}: StatusOK,
	}
	if len(res) != len(want) {
		t.Fatalf("%d results, want %d", len(res), len(want))
	}
	for _, r := range res {
		if s := want[[2]string{r.Workload, r.Contestant}]; r.Status != s {
			t.Errorf("%s/%s: status %s (%s), want %s", r.Workload, r.Contestant, r.Status, r.Err, s)
		}
		switch r.Status {
		case StatusOK:
			if r.Summary.N != 3 || r.Summary.Median != 2*time.Millisecond {
				t.Errorf("%s/%s: summary %+v, want 3 samples, median 2ms", r.Workload, r.Contestant, r.Summary)
			}
		case StatusUnavailable, StatusFailed:
			if r.Err == "" {
				t.Errorf("%s/%s: %s without a reason", r.Workload, r.Contestant, r.Status)
			}
		}
	}
	if r := res[3]; !strings.Contains(r.Err, "no such tool") {
		t.Errorf("unavailable contestant's error %q does not say why", r.Err)
	}
}

func TestRunFewerRepsWhenSlow(t *testing.T) {
	n := 0
	ws := []Workload{{Name: "slow", Rep: func(context.Context, *Env, *Contestant, int) (time.Duration, error) {
		n++
		return time.Minute, nil
	}}}
	res, err := Run(context.Background(), &Env{Jan: &Janitor{}}, ws, []*Contestant{{Name: "a"}},
		RunOptions{Reps: 5, SlowReps: 3, Slow: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || res[0].Summary.N != 3 {
		t.Fatalf("ran %d times, %d samples; want 3 for a slow workload", n, res[0].Summary.N)
	}
	n = 0
	res, _ = Run(context.Background(), &Env{Jan: &Janitor{}}, ws, []*Contestant{{Name: "a"}},
		RunOptions{Reps: 5, SlowReps: 3, Slow: time.Second, VerySlowReps: 2, VerySlow: 10 * time.Second})
	if n != 2 || res[0].Summary.N != 2 {
		t.Fatalf("ran %d times, %d samples; want 2 for a very slow workload", n, res[0].Summary.N)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ws := []Workload{{Name: "w", Rep: func(context.Context, *Env, *Contestant, int) (time.Duration, error) {
		cancel()
		return 0, context.Canceled
	}}, {Name: "never", Rep: func(context.Context, *Env, *Contestant, int) (time.Duration, error) {
		t.Error("a workload ran after the bench was interrupted")
		return 0, nil
	}}}
	_, err := Run(ctx, &Env{Jan: &Janitor{}}, ws, []*Contestant{{Name: "a"}}, RunOptions{Reps: 3})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func TestRunNoWarmup(t *testing.T) {
	var reps []int
	ws := []Workload{{Name: "fresh", NoWarmup: true, Rep: func(_ context.Context, _ *Env, c *Contestant, rep int) (time.Duration, error) {
		reps = append(reps, rep)
		if c.Name == "broken" {
			return 0, errors.New("cannot mount")
		}
		return time.Millisecond, nil
	}}}
	res, err := Run(context.Background(), &Env{Jan: &Janitor{}}, ws, []*Contestant{{Name: "a"}, {Name: "broken"}}, RunOptions{Warmup: 1, Reps: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if r < 0 {
			t.Fatalf("a warm-up ran for a NoWarmup workload: reps %v", reps)
		}
	}
	if res[0].Summary.N != 2 {
		t.Errorf("a: %d samples, want 2", res[0].Summary.N)
	}
	if res[1].Status != StatusUnavailable || !strings.Contains(res[1].Err, "cannot mount") {
		t.Errorf("a contestant failing its first repetition without warm-up: %s %q, want unavailable with the error", res[1].Status, res[1].Err)
	}
}
