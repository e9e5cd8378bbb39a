package builder

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestMeasure prints the figures of the closing note: the cost of a
// no-op step with and without --cache-each-step, cached rebuild versus
// full build, and a child build over a small and a 270 MB parent. It only
// runs with OVL_MEASURE=1, as root (it asserts nothing about time).
func TestMeasure(t *testing.T) {
	if os.Getenv("OVL_MEASURE") != "1" {
		t.Skip("set OVL_MEASURE=1 to measure build costs")
	}
	testutil.RequireRoot(t)
	b := decision(t, backend.Native)
	var out bytes.Buffer

	// Each kind of step with and without --cache-each-step, interleaved
	// over three rounds (timings here drift within minutes).
	const n = 100
	for _, kind := range []string{"!Sh true", "!EnsureDir /"} {
		var y strings.Builder
		y.WriteString("containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&y, "    - !Env {I: '%d'}\n    - %s\n", i, kind)
		}
		for round := 0; round < 3; round++ {
			for _, one := range []bool{false, true} {
				dir := project(t, y.String(), nil)
				testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
				o := runOpts(b, dir, &out)
				o.OneLayer, o.NoRoot = one, true
				start := time.Now()
				mustBuild(t, dir, "c", o)
				full := time.Since(start)
				start = time.Now()
				mustBuild(t, dir, "c", o)
				cached := time.Since(start)
				t.Logf("round %d: %d x (%q + !Env), one layer %-5v: full build %v = %.2f ms per %s step; cached rebuild %v",
					round, n, kind, one, full.Round(time.Millisecond), float64(full.Microseconds())/1000/n, kind, cached.Round(10*time.Microsecond))
			}
		}
	}

	// A child over a small and a large parent.
	for _, mb := range []int{1, 270} {
		dir := project(t, "containers:\n  parent:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !Copy {source: /work/big, path: /big}\n"+
			"  child:\n    setup:\n    - !Container parent\n    - !Sh \"echo child > /etc/child\"\n    - !Text {/etc/more: x}\n", nil)
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		files := 15000 * mb / 270
		chunk := bytes.Repeat([]byte("x"), mb<<20/files)
		for i := 0; i < files; i++ {
			p := filepath.Join(dir, "big", fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d", i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, chunk, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		o := runOpts(b, dir, &out)
		start := time.Now()
		mustBuild(t, dir, "parent", o)
		parent := time.Since(start)
		// The child alone: the parent is planned (and checked) first by
		// the same builder, then the child's steps are timed.
		o.NoRoot = true
		o.Events = nil
		bl := New(load(t, dir), o)
		start = time.Now()
		if _, err := bl.Build(t.Context(), "parent"); err != nil {
			t.Fatal(err)
		}
		check := time.Since(start)
		start = time.Now()
		r, err := bl.Build(t.Context(), "child")
		if err != nil {
			t.Fatal(err)
		}
		steps := time.Since(start)
		o.NoRoot = false
		var rootEvent Event
		o.Events = func(e Event) {
			if e.Status == StatusRoot && e.Container == "child" {
				rootEvent = e
			}
		}
		start = time.Now()
		cr, err := New(load(t, dir), o).Build(t.Context(), "child")
		if err != nil {
			t.Fatal(err)
		}
		flatten := time.Since(start)
		// The child's root cloned from the parent's versus flattened from
		// all its layers (as before roots were cloned), interleaved.
		for round := 0; round < 3; round++ {
			if err := removeAll(filepath.Dir(cr.Root)); err != nil {
				t.Fatal(err)
			}
			if _, err := New(load(t, dir), o).Build(t.Context(), "child"); err != nil {
				t.Fatal(err)
			}
			full := filepath.Join(dir, ".vagga", "measure-flatten")
			start = time.Now()
			if err := layer.Flatten(t.Context(), cr.Layers, full); err != nil {
				t.Fatal(err)
			}
			flat := time.Since(start)
			if err := removeAll(full); err != nil {
				t.Fatal(err)
			}
			t.Logf("parent of %d MB, round %d: child root cloned from the parent's %.0f ms; flattened from all %d layers %v",
				mb, round, rootEvent.Seconds*1000, len(cr.Layers), flat.Round(time.Millisecond))
		}
		t.Logf("parent of %d MB (%d files): parent build %v; up-to-date check of the parent %v; child steps %v (ran %d); child build with its root %v, of which the root %.0f ms (%s)",
			mb, files, parent.Round(time.Millisecond), check.Round(time.Millisecond), steps.Round(time.Millisecond), r.Ran,
			flatten.Round(time.Millisecond), rootEvent.Seconds*1000, strings.SplitN(rootEvent.Detail, ":", 2)[0])
	}
}
