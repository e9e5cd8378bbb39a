package builder

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/selector"
)

// backends are the decisions (one per backend) command steps are tested
// on.
func backends(t testing.TB) []selector.Decision {
	var out []selector.Decision
	for _, name := range backend.Names {
		out = append(out, decision(t, name))
	}
	return out
}

// decision is the decision of a caller that forces the backend name.
func decision(t testing.TB, name string) selector.Decision {
	t.Helper()
	d, err := selector.Force(name, "the test")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runOpts are the options of a build whose command steps run with the
// runner as d decided; the steps' output goes to out.
func runOpts(d selector.Decision, dir string, out *bytes.Buffer) Options {
	return Options{Decision: d, Run: RunnerFunc(d, dir), Output: out}
}

const commandSteps = `
containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh "echo a > /etc/a; rm /etc/group; mkdir -p /opt/x; rm -r /var/cache"
    - !Cmd [/bin/sh, -c, "echo b > /opt/x/b"]
    - !Env {V: from-env}
    - !Sh "echo $V > /etc/v; cat /work/input > /etc/input"
    - !Text {/opt/x/c: c}
`

// TestCommandStepsOnEachBackend builds with the runner on every backend,
// as root and as uid 65534: the second build runs nothing, editing step 4
// of 6 reruns 4-6, a failing step keeps 1-3 and a fix reruns from it, and
// every backend gives the same root.
func TestCommandStepsOnEachBackend(t *testing.T) {
	t.Parallel() // beside the package's other long tests
	testAsRootAndNobody(t, func(t *testing.T) {
		hashes := map[string]string{}
		for _, b := range backends(t) {
			t.Run(b.Backend, func(t *testing.T) {
				dir := project(t, commandSteps, map[string]string{"input": "from-work\n"})
				testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
				var out bytes.Buffer
				start := time.Now()
				r, _, err := buildOnce(t, dir, "c", runOpts(b, dir, &out))
				if errors.Is(err, backend.ErrUnavailable) {
					t.Skipf("backend %s unavailable here: %v", b.Backend, err)
				}
				if err != nil {
					t.Fatalf("build: %v\noutput:\n%s", err, out.String())
				}
				full := time.Since(start)
				mustContain(t, r.Root, "etc/a", "a\n")
				mustContain(t, r.Root, "opt/x/b", "b\n")
				mustContain(t, r.Root, "opt/x/c", "c")
				mustContain(t, r.Root, "etc/v", "from-env\n")
				mustContain(t, r.Root, "etc/input", "from-work\n")
				for _, gone := range []string{"etc/group", "var/cache"} {
					if _, err := os.Lstat(filepath.Join(r.Root, gone)); err == nil {
						t.Errorf("%s was removed by a step but is in the root", gone)
					}
				}
				hashes[b.Backend] = treeHash(t, r.Root)

				// The one-layer build (uppers of command steps shared with
				// file steps) gives the same root.
				one := project(t, commandSteps, map[string]string{"input": "from-work\n"})
				testutil.BusyboxTar(t, filepath.Join(one, "base.tar.gz"))
				o := runOpts(b, one, &out)
				o.OneLayer = true
				shared, _ := mustBuild(t, one, "c", o)
				if got := treeHash(t, shared.Root); got != hashes[b.Backend] {
					t.Errorf("one-layer build differs:\n%s\nvs\n%s", got, hashes[b.Backend])
				}

				start = time.Now()
				r2, rec := mustBuild(t, dir, "c", runOpts(b, dir, &out))
				t.Logf("%s: full build %v, cached rebuild %v", b.Backend, full, time.Since(start))
				if r2.Ran != 0 {
					t.Errorf("unchanged rebuild ran %d steps: %v", r2.Ran, rec.statuses())
				}

				// Edit step 4 of 6.
				edited := strings.Replace(commandSteps, "{V: from-env}", "{V: edited}", 1)
				writeProject(t, dir, edited, nil)
				r3, rec := mustBuild(t, dir, "c", runOpts(b, dir, &out))
				want := map[int]Status{1: StatusCached, 2: StatusCached, 3: StatusCached, 4: StatusDone, 5: StatusDone, 6: StatusDone}
				if got := rec.statuses(); !equalStatus(got, want) {
					t.Errorf("after editing step 4: %v, want %v", got, want)
				}
				mustContain(t, r3.Root, "etc/v", "edited\n")

				// Step 5 fails; 1-4 stay cached; the fix reruns 5-6.
				failing := strings.Replace(edited, "echo $V > /etc/v;", "exit 3;", 1)
				writeProject(t, dir, failing, nil)
				_, rec, err = buildOnce(t, dir, "c", runOpts(b, dir, &out))
				var se *StepError
				var ee *ExitError
				if !errors.As(err, &se) || !errors.As(err, &ee) || ee.Code != 3 || se.Index != 5 || se.Pos.Line != 9 {
					t.Fatalf("failing step: %v; want step 5 at line 9 exiting 3", err)
				}
				if !strings.Contains(err.Error(), "--shell-before-step 5") {
					t.Errorf("error does not say how to get a shell before the step: %v", err)
				}
				if got := rec.statuses(); got[4] != StatusCached || got[3] != StatusCached || got[5] != StatusFailed {
					t.Errorf("failing build: %v", got)
				}
				assertNothingHalfMade(t, dir)
				writeProject(t, dir, strings.Replace(edited, "echo $V > /etc/v;", "echo $V fixed > /etc/v;", 1), nil)
				r4, rec := mustBuild(t, dir, "c", runOpts(b, dir, &out))
				mustContain(t, r4.Root, "etc/v", "edited fixed\n")
				want = map[int]Status{1: StatusCached, 2: StatusCached, 3: StatusCached, 4: StatusCached, 5: StatusDone, 6: StatusDone}
				if got := rec.statuses(); !equalStatus(got, want) {
					t.Errorf("after fixing step 5: %v, want %v", got, want)
				}
			})
		}
		var first string
		for name, h := range hashes {
			if first == "" {
				first = h
				continue
			}
			if h != first {
				t.Errorf("backend %s built a different root:\n%s\nvs\n%s", name, h, first)
			}
		}
		t.Logf("identical roots from %d backends", len(hashes))
	})
}

// TestDeepStackOnNative builds 600 steps with --cache-each-step on kernel
// overlayfs, whose stacks end at 500 layers: the oldest layers are
// squashed, command steps near the end mount the squashed stack, and the
// result equals the one-layer build.
func TestDeepStackOnNative(t *testing.T) {
	t.Parallel() // beside the package's other long tests
	testAsRootAndNobody(t, func(t *testing.T) {
		var y strings.Builder
		y.WriteString("containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !EnsureDir /steps\n")
		for i := 3; i <= 600; i++ {
			if i%60 == 0 {
				fmt.Fprintf(&y, "    - !Sh \"n=$(ls /steps | wc -l); echo $n > /steps/count%d; rm -f /steps/%d\"\n", i, i-7)
			} else {
				fmt.Fprintf(&y, "    - !Text {/steps/%d: '%d'}\n", i, i)
			}
		}
		b := decision(t, backend.Native)
		var out bytes.Buffer
		each := project(t, y.String(), nil)
		testutil.BusyboxTar(t, filepath.Join(each, "base.tar.gz"))
		start := time.Now()
		r, rec, err := buildOnce(t, each, "c", runOpts(b, each, &out))
		if errors.Is(err, backend.ErrUnavailable) {
			t.Skipf("native overlay unavailable: %v", err)
		}
		if err != nil {
			t.Fatalf("600 steps: %v\n%s", err, out.String())
		}
		t.Logf("600 steps, each cached: %v", time.Since(start))
		if len(r.Layers) > b.MaxLayers {
			t.Errorf("stack of %d layers", len(r.Layers))
		}
		squashed := false
		for _, e := range rec.events {
			squashed = squashed || e.Status == StatusSquash
		}
		if !squashed {
			t.Error("600 layers were mounted without squashing")
		}
		checkCounts := func(what, root string) {
			t.Helper()
			present := map[int]bool{}
			for i := 3; i <= 600; i++ {
				if i%60 == 0 {
					b, _ := os.ReadFile(filepath.Join(root, fmt.Sprintf("steps/count%d", i)))
					if want := fmt.Sprintf("%d\n", len(present)); string(b) != want && !strings.HasSuffix(string(b), " "+want) {
						t.Errorf("%s: step %d saw %q entries in /steps, want %q", what, i, b, want)
					}
					delete(present, i-7)
				}
				present[i] = true
			}
		}
		checkCounts("each step", r.Root)

		one := project(t, y.String(), nil)
		testutil.BusyboxTar(t, filepath.Join(one, "base.tar.gz"))
		o := runOpts(b, one, &out)
		o.OneLayer = true
		shared, _ := mustBuild(t, one, "c", o)
		checkCounts("one layer", shared.Root)
		if a, b := treeHash(t, r.Root), treeHash(t, shared.Root); a != b {
			t.Errorf("600-step build differs from the one-layer build:\n%s\nvs\n%s", a, b)
		}
	})
}

// A step that changes only the root directory's mode keeps its layer in
// the stack.
func TestRootModeOnlyStep(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		dir := project(t, "containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !Sh \"chmod 750 /\"\n    - !Text {/x: x}\n", nil)
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		var out bytes.Buffer
		r, _ := mustBuild(t, dir, "c", runOpts(decision(t, backend.Native), dir, &out))
		fi, err := os.Stat(r.Root)
		if err != nil || fi.Mode().Perm() != 0o750 {
			t.Errorf("root mode %v (%v), want 0750: %s", fi.Mode(), err, out.String())
		}
		if len(r.Layers) != 4 {
			t.Errorf("%d layers, want 4 (the base, the tarball, the chmod, the text)", len(r.Layers))
		}
	})
}
