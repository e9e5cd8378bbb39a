package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Env is what workloads run with: the fixture, the janitor, scratch
// space, and the mounts kept for a whole phase.
type Env struct {
	Fix *Fixture
	Jan *Janitor
	// Ovl is the path of the ovl binary for the user-facing workloads.
	Ovl string
	// Root reports whether the bench runs as root (cold-cache workloads
	// drop the page cache, which needs root).
	Root bool
	// Logf, when set, is told about clean-ups that take long, so a
	// bench that seems stuck says where.
	Logf func(format string, args ...any)

	scratch string
	seq     int
	kept    map[keptKey]keptMount
	verbs   map[string]verbInfo
	// Requests, when set, counts the FUSE requests of one extra
	// repetition per workload and FUSE contestant (--requests); counting
	// holds the connections of the mounts that repetition used.
	Requests *reqTracer
	counting map[uint64]bool
	// The CI workloads' registry (cicache.go) and the caches filled.
	regAddr  string
	regErr   error
	ciFilled map[string]bool
}

type keptMount struct {
	m       Mounted
	release func() error
}

type keptKey struct {
	c    *Contestant
	kind string
}

// NewEnv returns an Env whose scratch directories live under dir.
func NewEnv(fix *Fixture, jan *Janitor, dir, ovl string) (*Env, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Env{Fix: fix, Jan: jan, Ovl: ovl, Root: os.Geteuid() == 0, scratch: dir, kept: map[keptKey]keptMount{}}, nil
}

// scratchDir makes a new, empty directory for c.
func (e *Env) scratchDir(c *Contestant, what string) (string, error) {
	e.seq++
	d := filepath.Join(e.scratch, fmt.Sprintf("%s-%s-%d", c.Slug(), what, e.seq))
	return d, os.MkdirAll(d, 0o755)
}

// mountFresh mounts lowers with c on a new upper, work and target. The
// returned release unmounts and removes it all; the janitor does that too
// if release is never called.
func (e *Env) mountFresh(ctx context.Context, c *Contestant, lowers []string) (Mounted, time.Duration, func() error, error) {
	d, err := e.scratchDir(c, "mnt")
	if err != nil {
		return nil, 0, nil, err
	}
	s := Stack{Lowers: lowers, Upper: filepath.Join(d, "upper"), Work: filepath.Join(d, "work"), Target: filepath.Join(d, "merged")}
	for _, p := range []string{s.Upper, s.Work, s.Target} {
		if err := os.Mkdir(p, 0o755); err != nil {
			return nil, 0, nil, err
		}
	}
	t0 := time.Now()
	m, err := c.Mount(ctx, s)
	took := time.Since(t0)
	if err != nil {
		os.RemoveAll(d)
		return nil, 0, nil, err
	}
	conn := e.countMount(c, m)
	release := e.Jan.Add("unmount "+s.Target, func() error {
		if conn != 0 && e.counting != nil {
			e.Requests.Released(conn)
		}
		t0 := time.Now()
		defer func() {
			if d := time.Since(t0); d > 2*time.Second && e.Logf != nil {
				e.Logf("  %s: unmount and clean-up of %s took %v", c.Name, s.Target, d.Round(100*time.Millisecond))
			}
		}()
		uerr := m.Unmount()
		if uerr != nil {
			// Do not remove what may still be mounted.
			unmountDir(s.Target)
		}
		if err := removeAll(d); err != nil && uerr == nil {
			uerr = err
		}
		return uerr
	})
	return m, took, release, nil
}

// countMount adds m's FUSE connection to the ones whose requests are
// counted, when a counted repetition runs, and returns it (0 otherwise).
func (e *Env) countMount(c *Contestant, m Mounted) uint64 {
	if e.counting == nil || !c.FUSE {
		return 0
	}
	conn, err := fuseConnection(m.Dir())
	if err != nil {
		return 0
	}
	if !e.counting[conn] {
		e.counting[conn] = true
		e.Requests.Mounted(conn)
	}
	return conn
}

// countedRep runs one repetition of w for c with its FUSE requests
// recorded, and returns them by operation.
func (e *Env) countedRep(ctx context.Context, w *Workload, c *Contestant, rep int) (map[string]int64, error) {
	if err := e.Requests.Start(); err != nil {
		return nil, err
	}
	e.counting = map[uint64]bool{}
	defer func() { e.counting = nil }()
	_, err := w.Rep(ctx, e, c, rep)
	counts, serr := e.Requests.Stop(e.counting)
	if err != nil {
		return nil, err
	}
	if serr == nil && len(e.counting) == 0 {
		serr = errors.New("the repetition made no FUSE mount of this contestant")
	}
	return counts, serr
}

// removeAll removes d, making read-only directories (a copied layer may
// have them) writable first.
func removeAll(d string) error {
	if err := os.RemoveAll(d); err == nil {
		return nil
	}
	exec.Command("chmod", "-R", "u+rwx", d).Run()
	return os.RemoveAll(d)
}

// keptMount returns c's mount of lowers for the current phase, mounting it at
// the first call; kind names it ("tree", "big", "deep").
func (e *Env) keptMount(ctx context.Context, c *Contestant, kind string, lowers []string) (Mounted, error) {
	k := keptKey{c, kind}
	if km, ok := e.kept[k]; ok {
		e.countMount(c, km.m)
		return km.m, nil
	}
	m, _, release, err := e.mountFresh(ctx, c, lowers)
	if err != nil {
		return nil, err
	}
	e.kept[k] = keptMount{m, release}
	return m, nil
}

// ReleaseKept unmounts every kept mount: the end of a phase. The
// contestants' clean-ups run at once, since nothing is timed then and
// some (a FUSE daemon's exit, removing an upper full of untarred files)
// take long.
func (e *Env) ReleaseKept() error {
	errs := make([]error, 0, len(e.kept))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, km := range e.kept {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := km.release()
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	e.kept = map[keptKey]keptMount{}
	return errors.Join(errs...)
}

// timeCmd runs a program and returns its wall time. Exit statuses in ok
// besides 0 count as success (grep's 1 for "no match").
func timeCmd(ctx context.Context, dir string, ok []int, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	took := time.Since(t0)
	if ee, isExit := err.(*exec.ExitError); isExit {
		for _, c := range ok {
			if ee.ExitCode() == c {
				err = nil
			}
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 3))
	}
	return took, nil
}

// lastLines keeps the last n lines of s, for errors that quote output.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// dropCaches writes back dirty data and drops the page, dentry and inode
// caches, for cold-cache workloads. It needs root.
func dropCaches() error {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches (needs root): %w", err)
	}
	return nil
}
