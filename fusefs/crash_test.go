package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestKillDuringCopyUp kills the daemon with SIGKILL while it copies up
// a 1 GiB file, and checks that no partial copy is visible afterwards:
// the upper has no entry for the file, and a new mount shows the lower
// file whole and leaves no scratch copy in the work dir.
func TestKillDuringCopyUp(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 1)
	const size = 1 << 30
	big := filepath.Join(s.lowers[0], "big")
	f, err := os.Create(big)
	mustDo(t, err)
	mustDo(t, unix.Fallocate(int(f.Fd()), 0, 0, size))
	_, err = f.WriteAt([]byte("tail"), size-4)
	mustDo(t, err)
	mustDo(t, f.Close())

	m := mountFuse(t, s.spec())
	pid := m.(*daemonMount).Pid()
	done := make(chan error, 1)
	go func() {
		// Opening for writing copies the whole file up.
		f, err := os.OpenFile(filepath.Join(s.target, "big"), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.WriteString("more")
			f.Close()
		}
		done <- err
	}()
	// Wait until the copy is under way: the daemon holds a scratch file
	// (an O_TMPFILE on the upper directory, "upper/#N (deleted)", or a
	// named one in the work dir) that has data but is not complete.
	work := filepath.Join(s.work, workSubdir)
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	for started := false; !started; {
		select {
		case err := <-done:
			t.Fatalf("the copy-up finished (%v) before the daemon could be killed", err)
		default:
		}
		ents, _ := os.ReadDir(fds)
		for _, e := range ents {
			p := filepath.Join(fds, e.Name())
			dst, err := os.Readlink(p)
			if err != nil || !strings.HasPrefix(dst, work+"/") && !strings.HasPrefix(dst, s.upper+"/#") {
				continue
			}
			if fi, err := os.Stat(p); err == nil && fi.Size() > 0 && fi.Size() < size {
				started = true
			}
		}
	}
	mustDo(t, syscall.Kill(pid, syscall.SIGKILL))
	if err := <-done; err == nil {
		t.Errorf("the write through the killed daemon succeeded")
	}
	m.Unmount() // the daemon is gone; detach what is left
	if _, err := os.Lstat(filepath.Join(s.upper, "big")); !os.IsNotExist(err) {
		t.Fatalf("upper/big after the crash: %v; want no entry (a partial copy would be visible)", err)
	}

	mountFuse(t, s.spec())
	fi, err := os.Stat(filepath.Join(s.target, "big"))
	mustDo(t, err)
	if fi.Size() != size {
		t.Errorf("big after remount: %d bytes, want %d", fi.Size(), size)
	}
	g, err := os.Open(filepath.Join(s.target, "big"))
	mustDo(t, err)
	defer g.Close()
	tail := make([]byte, 4)
	_, err = g.ReadAt(tail, size-4)
	mustDo(t, err)
	if string(tail) != "tail" {
		t.Errorf("big after remount ends in %q, want the lower's %q", tail, "tail")
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir after remount holds %d stale entries", len(ents))
	}
}

// TestKillAfterCopyUp kills the daemon with SIGKILL right after a write
// that copied a file up returns, before the copy's background sync has
// had time to run (see copySyncer): nothing the write did may be lost, and
// the daemon's scratch must not show, when the stack is mounted again,
// by fusefs and by kernel overlay.
func TestKillAfterCopyUp(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 1)
	files := map[string]string{}
	for i := range 20 {
		files[fmt.Sprintf("d%d/f", i)] = strings.Repeat("lower ", 1000)
	}
	writeFiles(t, s.lowers[0], files)
	m := mountFuse(t, s.spec())
	for name := range files {
		f, err := os.OpenFile(filepath.Join(s.target, name), os.O_WRONLY|os.O_APPEND, 0)
		mustDo(t, err)
		_, err = f.WriteString("appended")
		mustDo(t, err)
		mustDo(t, f.Close())
	}
	mustDo(t, syscall.Kill(m.(*daemonMount).Pid(), syscall.SIGKILL))
	m.Unmount()
	check := func(how, target string) {
		t.Helper()
		for name, lower := range files {
			if got := string(must(os.ReadFile(filepath.Join(target, name)))); got != lower+"appended" {
				t.Errorf("%s: %s after the kill: %d bytes, want the lower's %d and the append", how, name, len(got), len(lower))
			}
		}
		ents, err := os.ReadDir(target)
		mustDo(t, err)
		if len(ents) != len(files) {
			t.Errorf("%s: %d entries at the top, want %d", how, len(ents), len(files))
		}
	}
	m2 := mountFuse(t, s.spec())
	check("fusefs", m2.Target())
	mustDo(t, m2.Unmount())
	kspec := s.spec()
	kspec.Target = filepath.Join(t.TempDir(), "k")
	kspec.Work = filepath.Join(t.TempDir(), "kwork")
	mustDo(t, os.Mkdir(kspec.Target, 0o755))
	mustDo(t, os.Mkdir(kspec.Work, 0o755))
	mountKernel(t, kspec)
	defer unix.Unmount(kspec.Target, 0)
	check("kernel overlay", kspec.Target)
}
