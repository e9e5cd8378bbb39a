package fusefs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// churnRSSGrowth bounds how much the daemon's resident memory may grow
// over n create+unlink cycles after the first 10,000 (by which its heap
// has about reached its working size; the Go heap's high-water mark
// still drifts by a few MiB): nothing of a deleted file may stay behind
// (it was ~1 KB a file: 116 MiB after 100,000 cycles, from 37).
func churnRSSGrowth(n int) int64 { return max(14<<20, int64(n)*200) }

// TestDaemonMemoryUnderChurn creates and unlinks files through the mount
// after a read of a lower file (by default the kernel then stops sending
// OPEN and RELEASE), and checks that the daemon's resident memory stays
// flat: measured after 10,000 cycles and at the end. 32,000 cycles in
// the default mode (where memory grew ~1 KB a file, some 20 MiB over
// the 22,000 measured, above the 14 MiB bound; 3-9 MiB of heap drift without the leak); with OVL_STRESS=1, 100,000 in
// both modes (OVL_CHURN_CYCLES sets another count).
func TestDaemonMemoryUnderChurn(t *testing.T) {
	testutil.RequireRoot(t)
	const warm = 10000
	cycles, modes := 32000, openModes[:1]
	if os.Getenv("OVL_STRESS") == "1" {
		cycles, modes = 100000, openModes[:2]
	}
	if v, err := strconv.Atoi(os.Getenv("OVL_CHURN_CYCLES")); err == nil && v > warm {
		cycles = v
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), 1)
			writeFiles(t, s.lowers[0], map[string]string{"lower-file": "data", "d/": ""})
			pid := mountMode(t, s.spec(), mode.opts).(*daemonMount).Pid()
			if _, err := os.ReadFile(filepath.Join(s.target, "lower-file")); err != nil {
				t.Fatal(err)
			}
			dir, err := unix.Open(filepath.Join(s.target, "d"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			mustDo(t, err)
			defer unix.Close(dir)
			churn := func(from, to int) {
				for i := from; i < to; i++ {
					name := "f" + strconv.Itoa(i)
					fd, err := unix.Openat(dir, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
					if err != nil {
						t.Fatalf("create %s: %v", name, err)
					}
					unix.Close(fd)
					if err := unix.Unlinkat(dir, name, 0); err != nil {
						t.Fatalf("unlink %s: %v", name, err)
					}
				}
			}
			churn(0, warm)
			runtime.GC()
			before := processRSS(t, pid)
			churn(warm, cycles)
			after := processRSS(t, pid)
			t.Logf("daemon RSS after %d create+unlink cycles: %s; after %d: %s", warm, mib(before), cycles, mib(after))
			if bound := churnRSSGrowth(cycles - warm); after-before > bound {
				t.Errorf("daemon RSS grew by %s over %d create+unlink cycles (bound %s): something of each deleted file stays",
					mib(after-before), cycles-warm, mib(bound))
			}
		})
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestOriginForgottenWithItsFile copies a lower file up, deletes it, and
// creates files until the upper's filesystem gives one of them the
// deleted copy's inode number (a small ext4 image, which reuses freed
// inodes at once): that new file must show a number of its own, not the
// deleted file's (whose copy-up kept its lower number).
func TestOriginForgottenWithItsFile(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skipf("mkfs.ext4 is not installed (package e2fsprogs): %v", err)
	}
	dir := t.TempDir()
	img, fsDir := filepath.Join(dir, "upper.img"), filepath.Join(dir, "ext4")
	mustDo(t, os.Mkdir(fsDir, 0o755))
	mustDo(t, os.WriteFile(img, nil, 0o600))
	mustDo(t, os.Truncate(img, 16<<20))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-N", "128", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	testutil.CleanupMount(t, fsDir)
	if out, err := exec.Command("mount", "-o", "loop", img, fsDir).CombinedOutput(); err != nil {
		t.Fatalf("mount the ext4 image: %v: %s", err, out)
	}
	s := newStack(t, dir, 1)
	s.upper, s.work = filepath.Join(fsDir, "upper"), filepath.Join(fsDir, "work")
	mustDo(t, os.Mkdir(s.upper, 0o755))
	mustDo(t, os.Mkdir(s.work, 0o755))
	writeFiles(t, s.lowers[0], map[string]string{"f": "lower data"})
	mountFuse(t, s.spec())
	var st, ust unix.Stat_t
	p := filepath.Join(s.target, "f")
	mustDo(t, os.Chmod(p, 0o600)) // copy-up
	mustDo(t, unix.Lstat(p, &st))
	mustDo(t, unix.Lstat(filepath.Join(s.upper, "f"), &ust))
	mustDo(t, os.Remove(p))
	// The daemon keeps the deleted copy's data until the kernel forgets
	// the file (and its background sync is done): create and delete
	// files until the filesystem gives one the freed inode.
	for i := range 5000 {
		g := filepath.Join(s.target, fmt.Sprintf("g%d", i))
		mustDo(t, os.WriteFile(g, nil, 0o644))
		var gst, ugst unix.Stat_t
		mustDo(t, unix.Lstat(g, &gst))
		mustDo(t, unix.Lstat(filepath.Join(s.upper, filepath.Base(g)), &ugst))
		if ugst.Ino != ust.Ino {
			mustDo(t, os.Remove(g))
			continue
		}
		if gst.Ino == st.Ino {
			t.Errorf("a new file given the deleted copy's upper inode %d shows the deleted file's number %d", ugst.Ino, st.Ino)
		}
		return
	}
	t.Fatalf("the upper's filesystem never gave a new file the deleted copy's inode %d (test setup)", ust.Ino)
}
