package fusefs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/difftest"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestReaddirWhileChanging lists a merged directory over and over while
// another goroutine creates and unlinks names in it through the mount.
// POSIX (readdir, seekdir) leaves open only whether a name added or
// removed meanwhile shows: every listing must succeed and show each name
// that stayed throughout exactly once, as kernel overlay does.
func TestReaddirWhileChanging(t *testing.T) {
	testutil.RequireRoot(t)
	const stable, listings = 800, 100
	for _, m := range kernelAndFusefs() {
		t.Run(m.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), 1)
			files := map[string]string{}
			for i := range stable {
				layer := "lower"
				if i%3 == 0 {
					layer = "upper"
				}
				files[fmt.Sprintf("d/%s-stable-entry-%04d", layer, i)] = ""
			}
			lower, upper := map[string]string{}, map[string]string{}
			for p, c := range files {
				if strings.Contains(p, "upper-") {
					upper[p] = c
				} else {
					lower[p] = c
				}
			}
			writeFiles(t, s.lowers[0], lower)
			writeFiles(t, s.upper, upper)
			m.mount(t, s)
			dir := filepath.Join(s.target, "d")

			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					p := filepath.Join(dir, fmt.Sprintf("churn-%d", i%50))
					if f, err := os.Create(p); err == nil {
						f.Close()
					}
					os.Remove(p)
				}
			}()
			failed, bad := 0, 0
			for range listings {
				names, err := getdentsAll(dir, 1024)
				if err != nil {
					failed++
					continue
				}
				seen := map[string]int{}
				for _, n := range names {
					seen[n]++
				}
				for i := range stable {
					n := fmt.Sprintf("lower-stable-entry-%04d", i)
					if i%3 == 0 {
						n = fmt.Sprintf("upper-stable-entry-%04d", i)
					}
					if seen[n] != 1 {
						bad++
						if bad < 5 {
							t.Errorf("a listing shows %s %d times, want once", n, seen[n])
						}
					}
				}
				for n, c := range seen {
					if c > 1 && bad < 5 {
						bad++
						t.Errorf("a listing shows %s %d times", n, c)
					}
				}
			}
			stop.Store(true)
			wg.Wait()
			if failed > 0 {
				t.Errorf("%d of %d listings failed while the directory changed", failed, listings)
			}
		})
	}
}

// getdentsAll lists dir with getdents64 into a buffer of bufSize bytes
// (small: many calls, and many READDIR requests to a FUSE daemon),
// without "." and "..".
func getdentsAll(dir string, bufSize int) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, bufSize)
	for {
		m, err := unix.Getdents(fd, buf)
		if err != nil || m == 0 {
			return names, err
		}
		difftest.ParseDirents(buf[:m], func(name string, _ uint64, _ byte) { names = append(names, name) })
	}
}

// TestReaddirContinuesAfterRemovals does what rm -rf (coreutils' fts)
// does with a big directory: read part of it, remove what was read, read
// on from there with the same descriptor, and so on; every name must be
// read exactly once and the directory end up empty, as under kernel
// overlay.
func TestReaddirContinuesAfterRemovals(t *testing.T) {
	testutil.RequireRoot(t)
	const entries, batch = 3000, 500
	for _, m := range kernelAndFusefs() {
		t.Run(m.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), 1)
			files := map[string]string{}
			for i := range entries {
				files[fmt.Sprintf("d/entry-%05d", i)] = ""
			}
			writeFiles(t, s.lowers[0], files)
			m.mount(t, s)
			fd, err := unix.Open(filepath.Join(s.target, "d"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			mustDo(t, err)
			defer unix.Close(fd)
			seen := map[string]int{}
			buf := make([]byte, 4096)
			var pending []string
			for done := false; !done; {
				m, err := unix.Getdents(fd, buf)
				if err != nil {
					t.Fatalf("getdents after %d names and their removal: %v", len(seen), err)
				}
				done = m == 0
				difftest.ParseDirents(buf[:m], func(name string, _ uint64, _ byte) {
					seen[name]++
					pending = append(pending, name)
				})
				if len(pending) >= batch || done {
					for _, n := range pending {
						mustDo(t, unix.Unlinkat(fd, n, 0))
					}
					pending = pending[:0]
				}
			}
			if len(seen) != entries {
				t.Errorf("read %d names, want %d", len(seen), entries)
			}
			for n, c := range seen {
				if c != 1 {
					t.Errorf("%s read %d times", n, c)
				}
			}
			mustDo(t, unix.Rmdir(filepath.Join(s.target, "d")))
		})
	}
}

// TestRmRfHugeLowerDir removes a lower directory of 100,001 entries with
// rm -rf, which reads 100,000 names (coreutils' fts), removes them and
// then reads on from where it stopped: the directory offset must stay
// valid across the removals.
// It takes minutes here (100,000 whiteouts), so it runs with make
// stress (OVL_STRESS=1); TestReaddirContinuesAfterRemovals does the same
// at a smaller scale in every run.
func TestRmRfHugeLowerDir(t *testing.T) {
	testutil.RequireRoot(t)
	if os.Getenv("OVL_STRESS") != "1" {
		t.Skip("skipping: 100,001 removals take minutes; make stress (OVL_STRESS=1) runs it")
	}
	const entries = 100001
	for _, m := range kernelAndFusefs()[:2] {
		t.Run(m.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), 1)
			d := filepath.Join(s.lowers[0], "d")
			mustDo(t, os.Mkdir(d, 0o755))
			fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			mustDo(t, err)
			for i := range entries {
				f, err := unix.Openat(fd, fmt.Sprintf("e%06d", i), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
				mustDo(t, err)
				unix.Close(f)
			}
			unix.Close(fd)
			m.mount(t, s)
			if out, err := exec.Command("rm", "-rf", filepath.Join(s.target, "d")).CombinedOutput(); err != nil {
				t.Fatalf("rm -rf of a lower directory of %d entries: %v: %.500s", entries, err, out)
			}
			if _, err := os.Lstat(filepath.Join(s.target, "d")); !os.IsNotExist(err) {
				t.Errorf("after rm -rf: %v, want it gone", err)
			}
		})
	}
}
