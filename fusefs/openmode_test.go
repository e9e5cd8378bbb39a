package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestOpenForWritingCopyUp pins down the one place where fusefs's default
// mode differs from the kernel by design, against the kernel itself: an
// open for writing of a lower file copies it up at once under the kernel
// and with StrictOpen (the parent directory becomes a merged one, nlink
// 1; a lower hard link becomes a file of its own, nlink 1), while by
// default nothing changes until the first write through that descriptor,
// after which all three agree.
func TestOpenForWritingCopyUp(t *testing.T) {
	testutil.RequireRoot(t)
	type seen struct {
		dirNlink, linkNlink uint64
		inUpper             bool
	}
	look := func(t *testing.T, s *stack) seen {
		t.Helper()
		var d, l unix.Stat_t
		mustDo(t, unix.Lstat(filepath.Join(s.target, "d"), &d))
		mustDo(t, unix.Lstat(filepath.Join(s.target, "d/h1"), &l))
		_, err := os.Lstat(filepath.Join(s.upper, "d/h1"))
		return seen{uint64(d.Nlink), uint64(l.Nlink), err == nil}
	}
	// run opens d/h1 for writing on a fresh stack mounted by mount, and
	// returns what a program sees before and after a write through it.
	run := func(t *testing.T, mount func(s *stack)) (before, after seen) {
		s := newStack(t, t.TempDir(), 1)
		writeFiles(t, s.lowers[0], map[string]string{"d/": "", "d/sub/": "", "d/h1": "data"})
		mustDo(t, os.Link(filepath.Join(s.lowers[0], "d/h1"), filepath.Join(s.lowers[0], "d/h2")))
		mount(s)
		f, err := os.OpenFile(filepath.Join(s.target, "d/h1"), os.O_WRONLY|os.O_APPEND, 0)
		mustDo(t, err)
		defer f.Close()
		before = look(t, s)
		_, err = f.Write([]byte("+"))
		mustDo(t, err)
		return before, look(t, s)
	}
	kBefore, kAfter := run(t, func(s *stack) { mountKernel(t, s.spec()) })
	if !kBefore.inUpper || kBefore != kAfter {
		t.Fatalf("kernel overlay: before the write %+v, after %+v; this test expects copy-up at open", kBefore, kAfter)
	}
	for _, mode := range openModes {
		t.Run(mode.name, func(t *testing.T) {
			before, after := run(t, func(s *stack) {
				testutil.CleanupMount(t, s.target)
				m, err := mountDaemon(context.Background(), reexec.Self(), s.spec(), mode.opts)
				mustDo(t, err)
				t.Cleanup(func() { m.Unmount() })
			})
			if after != kAfter {
				t.Errorf("after a write: %+v, kernel %+v", after, kAfter)
			}
			if mode.opts.StrictOpen {
				if before != kBefore {
					t.Errorf("with StrictOpen, after the open: %+v, kernel %+v", before, kBefore)
				}
				return
			}
			// Default mode: the lower file and its directory untouched.
			if want := (seen{dirNlink: 3, linkNlink: 2, inUpper: false}); before != want {
				t.Errorf("by default, after the open: %+v, want %+v (no copy-up until the first change)", before, want)
			}
		})
	}
}
