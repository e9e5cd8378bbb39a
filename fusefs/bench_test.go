package fusefs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ovl/internal/testutil"
)

// TestCompareWithPeers times the read-side workloads of the project's
// benchmark (find+stat, read every file, grep -r) over a copy of the Go
// distribution on fusefs, fuse-overlayfs and kernel overlay, interleaved
// and warm, and logs a table. It runs only with OVL_BENCH=1 (it takes a
// minute, and timings are no assertion); bench/ makes the official
// figures.
func TestCompareWithPeers(t *testing.T) {
	if os.Getenv("OVL_BENCH") != "1" {
		t.Skip("set OVL_BENCH=1 to compare fusefs with fuse-overlayfs and kernel overlay")
	}
	testutil.RequireRoot(t)
	src := os.Getenv("OVL_BENCH_TREE")
	if src == "" {
		src = "/usr/local/go"
	}
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	if out, err := exec.Command("cp", "-a", src, lower).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", src, err, out)
	}
	type contestant struct {
		name  string
		mount func(s *stack) func()
	}
	mk := func(name string) *stack {
		s := newStack(t, filepath.Join(dir, name), 0)
		s.lowers = []string{lower}
		return s
	}
	contestants := []contestant{
		{"kernel", func(s *stack) func() {
			mountKernel(t, s.spec())
			return func() { unix.Unmount(s.target, 0) }
		}},
		{"fuse-overlayfs", func(s *stack) func() {
			testutil.CleanupMount(t, s.target)
			out, err := exec.Command("fuse-overlayfs", "-o", "lowerdir="+lower+",upperdir="+s.upper+",workdir="+s.work, s.target).CombinedOutput()
			if err != nil {
				t.Fatalf("fuse-overlayfs: %v: %s", err, out)
			}
			return func() { unix.Unmount(s.target, 0) }
		}},
		{"fusefs", func(s *stack) func() {
			m, err := NewBackend().Mount(context.Background(), s.spec())
			if err != nil {
				t.Fatal(err)
			}
			testutil.CleanupMount(t, s.target)
			return func() { m.Unmount() }
		}},
		{"fusefs-noopen", func(s *stack) func() {
			m, err := mountDaemon(context.Background(), s.spec(), Options{NoOpen: true})
			if err != nil {
				t.Fatal(err)
			}
			testutil.CleanupMount(t, s.target)
			return func() { m.Unmount() }
		}},
	}
	workloads := []struct {
		name string
		cmd  string
	}{
		{"find+stat", "find . -printf '%s %i\\n' >/dev/null"},
		{"read-all", "find . -type f -print0 | xargs -0 cat >/dev/null"},
		{"grep-r", "grep -r -q zzqqxxnotthere . || true"},
	}
	targets := map[string]string{}
	for _, c := range contestants {
		s := mk(c.name)
		undo := c.mount(s)
		t.Cleanup(undo)
		targets[c.name] = s.target
	}
	const rounds = 7
	times := map[string][]time.Duration{}
	for _, w := range workloads {
		for round := 0; round <= rounds; round++ {
			for _, c := range contestants {
				cmd := exec.Command("sh", "-c", w.cmd)
				cmd.Dir = targets[c.name]
				start := time.Now()
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s on %s: %v: %s", w.name, c.name, err, out)
				}
				if round > 0 { // round 0 warms the caches
					k := w.name + "/" + c.name
					times[k] = append(times[k], time.Since(start))
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "min / median of %d warm rounds, interleaved, ms\n%-10s", rounds, "")
	for _, c := range contestants {
		fmt.Fprintf(&b, " %15s", c.name)
	}
	for _, w := range workloads {
		fmt.Fprintf(&b, "\n%-10s", w.name)
		for _, c := range contestants {
			d := times[w.name+"/"+c.name]
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			fmt.Fprintf(&b, " %7.0f /%6.0f", float64(d[0].Microseconds())/1000, float64(d[len(d)/2].Microseconds())/1000)
		}
	}
	t.Log("\n" + b.String())
	if out := os.Getenv("OVL_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()+"\n"), 0o644)
	}
}
