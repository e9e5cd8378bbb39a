package fusefs

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/difftest"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// The differential test runs random operation sequences on two identical
// layer stacks, one under kernel overlayfs (the oracle) and one under
// fusefs, and demands the same errno from every call and the same trees,
// also when each reads the layers the other wrote (see internal/difftest).
//
// Replay one seed with `go test ./fusefs -run Differential/root -seed N`
// (or OVL_DIFF_SEED=N); OVL_DIFF_OPS sets the sequence length,
// OVL_DIFF_SEEDS how many seeds run, OVL_DIFF_MAXFAIL after how many
// failed seeds the run stops (0: never), OVL_DIFF_KEEP=1 keeps the stacks
// of failed seeds; OVL_STRESS=1 runs thousands of longer sequences from a
// random first seed (printed; OVL_DIFF_FIRST sets it).
var diffSeed = flag.Int64("seed", 0, "run only this seed of TestDifferential (also OVL_DIFF_SEED)")

// `make test` runs 30 sequences of 30 operations as root and 30 as uid
// 65534 in each of fusefs's two modes, and 20 on read-only stacks: 140
// in all, the five runs side by side; `make stress` (OVL_STRESS=1) runs
// 3000 of 60 operations in each writable run.
const (
	diffSeeds         = 30   // seeds per writable run in `make test`
	diffStressSeeds   = 3000 // seeds with OVL_STRESS=1
	diffOps           = 30   // operations per sequence
	diffReadOnlySeeds = 20   // seeds on stacks without an upper
	diffStressOps     = 60
	diffMaxFail       = 3 // failed seeds to report before stopping, by default
	diffEntry         = "fusefs-differential"
	diffEntryStrict   = "fusefs-differential-strict"
	envDiffSeed       = "OVL_DIFF_SEED"
	envDiffFirst      = "OVL_DIFF_FIRST"
	envDiffOps        = "OVL_DIFF_OPS"
	envDiffKeep       = "OVL_DIFF_KEEP"
	envDiffMaxFail    = "OVL_DIFF_MAXFAIL"
	envDiffSeeds      = "OVL_DIFF_SEEDS"
)

func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(testutil.Main(m))
}

func init() {
	difftest.RegisterEntry(diffEntry, func() (difftest.Mounter, difftest.Mounter) { return diffMounters(false) })
	difftest.RegisterEntry(diffEntryStrict, func() (difftest.Mounter, difftest.Mounter) { return diffMounters(true) })
}

// diffMounters returns the oracle and the filesystem under test, in the
// mode strict says (Options.StrictOpen) whatever the environment says,
// so that runs in both modes can go side by side in one process.
func diffMounters(strict bool) (difftest.Mounter, difftest.Mounter) {
	opts := EnvOptions()
	opts.StrictOpen = strict
	subject := difftest.Mounter{Name: backend.FUSE, Mount: func(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
		return mountDaemon(ctx, reexec.Self(), spec, opts)
	}}
	return difftest.FromBackend(native.New()), subject
}

// diffPlan is which seeds a run covers, how long each sequence is, and
// after how many failed seeds it stops.
type diffPlan struct {
	seeds   []int64
	ops     int
	maxFail int
	env     []string // passes the plan on to the unprivileged child
}

func planDiff(t *testing.T) diffPlan {
	t.Helper()
	p := diffPlan{ops: diffOps, maxFail: diffMaxFail}
	if v := os.Getenv(envDiffMaxFail); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want how many failed seeds to report (0: all)", envDiffMaxFail, v)
		}
		p.maxFail = n
	}
	if os.Getenv("OVL_STRESS") == "1" {
		p.ops = diffStressOps
	}
	if v := os.Getenv(envDiffOps); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of operations", envDiffOps, v)
		}
		p.ops = n
	}
	p.env = append(p.env, fmt.Sprintf("%s=%d", envDiffOps, p.ops))
	seed := *diffSeed
	if v := os.Getenv(envDiffSeed); v != "" && seed == 0 {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a seed (an integer)", envDiffSeed, v)
		}
		seed = s
	}
	count := diffSeeds
	if os.Getenv("OVL_STRESS") == "1" {
		count = diffStressSeeds
	}
	if v := os.Getenv(envDiffSeeds); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of seeds", envDiffSeeds, v)
		}
		count = n
	}
	switch {
	case seed != 0:
		p.seeds = []int64{seed}
		p.env = append(p.env, fmt.Sprintf("%s=%d", envDiffSeed, seed))
	case os.Getenv("OVL_STRESS") == "1":
		first := time.Now().UnixNano() % 1e9
		if v := os.Getenv(envDiffFirst); v != "" {
			f, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%s=%q: want the first seed (an integer)", envDiffFirst, v)
			}
			first = f
		}
		p.seeds = difftest.Seeds(first, count)
		p.env = append(p.env, fmt.Sprintf("%s=%d", envDiffFirst, first))
		t.Logf("stress: seeds %d to %d, %d operations each", first, first+int64(count)-1, p.ops)
	default:
		p.seeds = difftest.Seeds(1, count)
	}
	return p
}

// diffConfig is the run's configuration; strict is for a subject with
// Options.StrictOpen, which copies up at open as the kernel does.
func diffConfig(t *testing.T, p diffPlan, dir string, ns layer.Namespace, strict bool) difftest.Config {
	return difftest.Config{
		Dir:                 dir,
		Namespace:           ns,
		Ops:                 p.ops,
		Replay:              fmt.Sprintf("%s=%d go test ./fusefs -run '^%s$' -seed %%d", envDiffOps, p.ops, t.Name()),
		Keep:                os.Getenv(envDiffKeep) == "1",
		CopyUpAtFirstChange: !strict,
	}
}

// TestDifferential compares fusefs with kernel overlayfs over many random
// operation sequences: as root, on read-only stacks (no upper), and as an
// ordinary user (both mounts then in a user namespace, overlay metadata
// in user.overlay.*); writable stacks in both of fusefs's modes: the
// default (copy-up at a file's first change) and StrictOpen (copy-up at
// open for writing, as the kernel). The runs go side by side, and beside
// the package's other long tests.
func TestDifferential(t *testing.T) {
	t.Parallel()
	for _, strict := range []bool{false, true} {
		suffix := ""
		if strict {
			suffix = "-strict-open"
		}
		t.Run("root"+suffix, func(t *testing.T) {
			t.Parallel()
			testutil.RequireRoot(t)
			p := planDiff(t)
			dir := t.TempDir()
			if os.Getenv(envDiffKeep) == "1" {
				dir = keepDir(t)
			}
			cfg := diffConfig(t, p, dir, layer.Trusted, strict)
			oracle, subject := diffMounters(strict)
			start := time.Now()
			errs := difftest.RunSeeds(context.Background(), cfg, p.seeds, oracle, subject, p.maxFail)
			reportDiffRun(t, p, errs, time.Since(start))
		})
		t.Run("nobody"+suffix, func(t *testing.T) {
			t.Parallel()
			if !testutil.InNobodyChild() {
				testutil.RunAsNobody(t, planDiff(t).env...)
				return
			}
			p := planDiff(t)
			dir := testutil.SharedDir(t)
			if os.Getenv(envDiffKeep) == "1" {
				dir = keepDir(t)
			}
			entry := diffEntry
			if strict {
				entry = diffEntryStrict
			}
			cfg := diffConfig(t, p, dir, layer.User, strict)
			start := time.Now()
			errs, err := difftest.RunInUserNamespace(context.Background(), entry, cfg, p.seeds, p.maxFail)
			if err != nil {
				t.Fatal(err)
			}
			reportDiffRun(t, p, errs, time.Since(start))
		})
	}
	t.Run("readonly", func(t *testing.T) {
		t.Parallel()
		testutil.RequireRoot(t)
		p := planDiff(t)
		if len(p.seeds) > diffReadOnlySeeds {
			p.seeds = p.seeds[:diffReadOnlySeeds]
		}
		cfg := diffConfig(t, p, t.TempDir(), layer.Trusted, false)
		cfg.ReadOnly = true
		oracle, subject := diffMounters(false)
		start := time.Now()
		errs := difftest.RunSeeds(context.Background(), cfg, p.seeds, oracle, subject, p.maxFail)
		reportDiffRun(t, p, errs, time.Since(start))
	})
}

// reportDiffRun fails the test with each failed seed and logs the run.
func reportDiffRun(t *testing.T, p diffPlan, errs []error, took time.Duration) {
	for _, err := range errs {
		t.Error(err)
	}
	if p.maxFail > 0 && len(errs) >= p.maxFail {
		t.Logf("stopped after %d failed seeds (%s=0 runs them all), in %v", len(errs), envDiffMaxFail, took.Round(time.Millisecond))
		return
	}
	t.Logf("%d seeds of %d operations, %d failed, in %v", len(p.seeds), p.ops, len(errs), took.Round(time.Millisecond))
}

// keepDir is a directory outside the test's temporary tree, so stacks of
// failed seeds survive the test (OVL_DIFF_KEEP=1).
func keepDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ovl-difftest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Logf("stacks of failed seeds are kept under %s", dir)
	t.Cleanup(func() { os.Remove(dir) }) // only when nothing was kept
	return dir
}
