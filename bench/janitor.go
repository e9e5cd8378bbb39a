package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A Janitor undoes what the bench made: mounts, daemons, scratch
// directories. Undo functions run last-registered first, each at most
// once, whether the bench ends normally, fails or is interrupted.
type Janitor struct {
	mu    sync.Mutex
	undos []*undo
}

type undo struct {
	what string
	once sync.Once
	fn   func() error
}

// Add registers fn, described by what (e.g. "unmount /x"), and returns a
// function that runs it now and forgets it; calling the returned function
// again, or Clean later, does nothing more.
func (j *Janitor) Add(what string, fn func() error) func() error {
	u := &undo{what: what, fn: fn}
	j.mu.Lock()
	j.undos = append(j.undos, u)
	j.mu.Unlock()
	return func() error {
		err := u.run()
		j.mu.Lock()
		j.undos = slices.DeleteFunc(j.undos, func(x *undo) bool { return x == u })
		j.mu.Unlock()
		return err
	}
}

func (u *undo) run() (err error) {
	ran := false
	u.once.Do(func() {
		ran = true
		err = u.fn()
	})
	if ran && err != nil {
		err = fmt.Errorf("%s: %w", u.what, err)
	}
	return err
}

// Clean runs every registered undo, newest first, and returns their
// errors joined.
func (j *Janitor) Clean() error {
	j.mu.Lock()
	undos := j.undos
	j.undos = nil
	j.mu.Unlock()
	var errs []error
	for i := len(undos) - 1; i >= 0; i-- {
		if err := undos[i].run(); err != nil {
			slog.Warn("cleanup", "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// OnSignal returns a context cancelled at the first SIGINT or SIGTERM, so
// the bench unwinds and its deferred Clean runs. A second signal cleans up
// at once and exits with status 130, for a bench stuck in a hung mount.
// stop releases the signal handler.
func (j *Janitor) OnSignal(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case sig := <-ch:
			fmt.Fprintf(os.Stderr, "ovl-bench: %v: stopping and cleaning up (again to force)\n", sig)
			cancel()
		}
		select {
		case <-done:
		case <-ch:
			fmt.Fprintln(os.Stderr, "ovl-bench: forced: unmounting everything now")
			j.Clean()
			os.Exit(130)
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

// MountsUnder lists the mount points at or below dir in
// /proc/self/mountinfo, deepest first, so they can be unmounted in order.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // mountinfo has the resolved path
	}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space) the kernel
// writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// SweepMounts detaches every mount left below dir, e.g. by an earlier bench
// that was killed with SIGKILL. It returns how many it detached.
func SweepMounts(dir string) (int, error) {
	mps, err := MountsUnder(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			return n, fmt.Errorf("unmount stale %s: %w", mp, err)
		}
		n++
	}
	return n, nil
}
