package fusefs

import (
	"context"
	"fmt"
	"log"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestCompareWithPeers times the read-side workloads of the project's
// benchmark (find+stat, read every file, grep -r) over a copy of the Go
// distribution on fusefs, fuse-overlayfs and kernel overlay, interleaved
// and warm, and logs a table. It runs only with OVL_BENCH=1 (it takes a
// minute, and timings are no assertion); bench/ makes the official
// figures. fusefs-volatile is a stack with Options.Volatile (no syncs,
// for throw-away uppers, as fuse-overlayfs never syncs); fusefs-strict
// runs with Options.StrictOpen (and so passthrough, as root).
// OVL_BENCH_WORKLOADS, a regexp, picks workloads by name.
func TestCompareWithPeers(t *testing.T) {
	if os.Getenv("OVL_BENCH") != "1" {
		t.Skip("set OVL_BENCH=1 to compare fusefs with fuse-overlayfs and kernel overlay")
	}
	testutil.RequireRoot(t)
	dir, lower := benchLower(t, "/usr/local/go")
	// A big file for the streaming read, and a tarball and a file list
	// for the writing workloads.
	bigf, err := os.Create(filepath.Join(lower, "big.bin"))
	mustDo(t, err)
	chunk := []byte(strings.Repeat("ovl-bench-data\n", 1<<16))
	for written := 0; written < 256<<20; written += len(chunk) {
		_, err := bigf.Write(chunk)
		mustDo(t, err)
	}
	mustDo(t, bigf.Close())
	tarball := filepath.Join(dir, "src.tar")
	if out, err := exec.Command("tar", "-cf", tarball, "-C", lower, "src").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	list := filepath.Join(dir, "append.list")
	if out, err := exec.Command("sh", "-c", "cd "+lower+" && find src -type f | sort | head -2000 > "+list).CombinedOutput(); err != nil {
		t.Fatalf("list: %v: %s", err, out)
	}

	type contestant struct {
		name  string
		mount func(s *stack) func()
	}
	seq := 0
	mk := func(name string) *stack {
		seq++
		s := newStack(t, filepath.Join(dir, fmt.Sprintf("%s-%d", name, seq)), 0)
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
		{"fusefs-volatile", func(s *stack) func() {
			spec := s.spec()
			spec.Options.Volatile = true
			m, err := mountDaemon(context.Background(), reexec.Self(), spec, EnvOptions())
			if err != nil {
				t.Fatal(err)
			}
			testutil.CleanupMount(t, s.target)
			return func() { m.Unmount() }
		}},
		{"fusefs-strict", func(s *stack) func() {
			m, err := mountDaemon(context.Background(), reexec.Self(), s.spec(), Options{StrictOpen: true})
			if err != nil {
				t.Fatal(err)
			}
			testutil.CleanupMount(t, s.target)
			return func() { m.Unmount() }
		}},
	}
	type workload struct {
		name   string
		cmd    string
		writes bool // needs a fresh stack each round
	}
	workloads := []workload{
		{"find+stat", "find . -printf '%s %i\\n' >/dev/null", false},
		{"read-all", "find . -type f -print0 | xargs -0 cat >/dev/null", false},
		{"grep-r", "grep -r -q zzqqxxnotthere . || true", false},
		{"read-big", "cat big.bin >/dev/null", false},
		{"append-2000", "while read f; do echo x >> \"$f\"; done < " + list, true},
		{"untar", "mkdir untarred && tar -xf " + tarball + " -C untarred", true},
		{"rm-rf", "rm -rf src", true},
	}
	targets := map[string]string{}
	for _, c := range contestants {
		s := mk(c.name)
		undo := c.mount(s)
		t.Cleanup(undo)
		targets[c.name] = s.target
	}
	const rounds, writeRounds = 5, 3
	times := map[string][]time.Duration{}
	only := regexp.MustCompile(os.Getenv("OVL_BENCH_WORKLOADS")) // e.g. 'append|untar'
	for _, w := range workloads {
		if !only.MatchString(w.name) {
			continue
		}
		for round := 0; round <= rounds; round++ {
			if w.writes && (round == 0 || round > writeRounds) {
				continue // nothing to warm: each round starts afresh
			}
			for _, c := range contestants {
				target := targets[c.name]
				var undo func()
				if w.writes {
					s := mk(c.name)
					undo = c.mount(s)
					target = s.target
					// Warm the lower's cache the same way for everyone.
					exec.Command("find", lower).Run()
				}
				cmd := exec.Command("sh", "-c", w.cmd)
				cmd.Dir = target
				start := time.Now()
				out, err := cmd.CombinedOutput()
				elapsed := time.Since(start)
				if undo != nil {
					undo()
				}
				if err != nil {
					t.Fatalf("%s on %s: %v: %s", w.name, c.name, err, out)
				}
				if round > 0 { // round 0 warms the caches
					k := w.name + "/" + c.name
					times[k] = append(times[k], elapsed)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "min / median, interleaved, ms: %d warm rounds of reads, %d fresh stacks for writes\n%-12s", rounds, writeRounds, "")
	for _, c := range contestants {
		fmt.Fprintf(&b, " %15s", c.name)
	}
	for _, w := range workloads {
		fmt.Fprintf(&b, "\n%-12s", w.name)
		for _, c := range contestants {
			d := times[w.name+"/"+c.name]
			if len(d) == 0 {
				continue
			}
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			fmt.Fprintf(&b, " %7.0f /%6.0f", float64(d[0].Microseconds())/1000, float64(d[len(d)/2].Microseconds())/1000)
		}
	}
	t.Log("\n" + b.String())
	if out := os.Getenv("OVL_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(b.String()+"\n"), 0o644)
	}
}

// benchLower copies OVL_BENCH_TREE (else tree) to DIR/lower, DIR being a
// fresh temporary directory, and returns both.
func benchLower(t *testing.T, tree string) (dir, lower string) {
	t.Helper()
	src := os.Getenv("OVL_BENCH_TREE")
	if src == "" {
		src = tree
	}
	dir = t.TempDir()
	lower = filepath.Join(dir, "lower")
	if out, err := exec.Command("cp", "-a", src, lower).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", src, err, out)
	}
	return dir, lower
}

// TestOpcodeProfile runs each workload of TestCompareWithPeers once on an
// in-process fusefs mount with request logging, and logs how many
// requests of each opcode it cost: where a workload's round trips go.
// It runs only with OVL_BENCH=profile (a diagnostic, not an assertion);
// OVL_FUSE_STRICT_OPEN=1 and OVL_FUSE_PASSTHROUGH=0 choose the mode.
func TestOpcodeProfile(t *testing.T) {
	if os.Getenv("OVL_BENCH") != "profile" {
		t.Skip("set OVL_BENCH=profile to count fusefs requests per workload")
	}
	testutil.RequireRoot(t)
	dir, lower := benchLower(t, "/usr/local/go/src/net")
	tarball := filepath.Join(dir, "src.tar")
	if out, err := exec.Command("tar", "-cf", tarball, "-C", lower, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	workloads := []struct{ name, cmd string }{
		{"find+stat", "find . -printf '%s %i\\n' >/dev/null"},
		{"read-all", "find . -type f -print0 | xargs -0 cat >/dev/null"},
		{"append", "find . -type f | head -200 | while read f; do echo x >> \"$f\"; done"},
		{"untar", "mkdir untarred && tar -xf " + tarball + " -C untarred"},
		{"rm-rf", "rm -rf http"},
	}
	// OVL_BENCH_CPUPROFILE=PREFIX writes a CPU profile of the daemon per
	// workload to PREFIX.WORKLOAD instead of counting requests.
	prof := os.Getenv("OVL_BENCH_CPUPROFILE")
	for i, w := range workloads {
		s := newStack(t, filepath.Join(dir, fmt.Sprint("s", i)), 0)
		s.lowers = []string{lower}
		counter := &opcodeCounter{counts: map[string]int{}}
		log.SetOutput(counter)
		testutil.CleanupMount(t, s.target)
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan struct{})
		served := make(chan error, 1)
		go func() {
			served <- Serve(ctx, s.spec(), Options{Debug: prof == "", NoPassthrough: EnvOptions().NoPassthrough, StrictOpen: EnvOptions().StrictOpen, Ready: func() { close(ready) }})
		}()
		select {
		case <-ready:
		case err := <-served:
			cancel()
			t.Fatalf("serve: %v", err)
		}
		exec.Command("find", s.target).Run() // warm, as the benchmark does
		counter.reset()
		if prof != "" {
			f, err := os.Create(prof + "." + w.name)
			mustDo(t, err)
			mustDo(t, pprof.StartCPUProfile(f))
		}
		cmd := exec.Command("sh", "-c", w.cmd)
		cmd.Dir = s.target
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("%s took %v", w.name, time.Since(start))
		if prof != "" {
			pprof.StopCPUProfile()
		}
		counts := counter.snapshot()
		cancel()
		<-served
		log.SetOutput(os.Stderr)
		if err != nil {
			t.Fatalf("%s: %v: %s", w.name, err, out)
		}
		keys := make([]string, 0, len(counts))
		total := 0
		for k, v := range counts {
			keys = append(keys, k)
			total += v
		}
		sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%d", k, counts[k])
		}
		t.Logf("%s: %d requests:%s", w.name, total, b.String())
	}
}

// opcodeCounter counts go-fuse's debug lines "rx N: OPCODE ...".
type opcodeCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *opcodeCounter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		_, rest, ok := strings.Cut(line, "rx ")
		if !ok {
			continue
		}
		_, rest, ok = strings.Cut(rest, ": ")
		if !ok {
			continue
		}
		op, _, _ := strings.Cut(rest, " ")
		c.mu.Lock()
		c.counts[op]++
		c.mu.Unlock()
	}
	return len(p), nil
}

func (c *opcodeCounter) reset() {
	c.mu.Lock()
	c.counts = map[string]int{}
	c.mu.Unlock()
}

func (c *opcodeCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}
