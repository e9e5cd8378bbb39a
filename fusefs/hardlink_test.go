package fusefs

import (
	"context"

	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"ovl/internal/testutil"
)

// TestDescriptorOfBrokenHardLink: a descriptor opened on a lower hard
// link before its copy-up (which breaks the link and renumbers the copy)
// sees the file's size change and, once the name is removed, the file
// deleted (nlink 0) while it still reads, as under the kernel's overlay.
// Found by the differential stress run (seed 1001217).
func TestDescriptorOfBrokenHardLink(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"a": "hello"})
		mustDo(t, os.Link(filepath.Join(s.lowers[0], "a"), filepath.Join(s.lowers[0], "b")))
	})
	type seen struct {
		nlink uint64
		size  int64
		data  string
	}
	observe := func(root string) []seen {
		fd, err := unix.Open(filepath.Join(root, "a"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		mustDo(t, err)
		defer unix.Close(fd)
		look := func() seen {
			var st unix.Stat_t
			mustDo(t, unix.Fstat(fd, &st))
			buf := make([]byte, 16)
			n, err := unix.Pread(fd, buf, 0)
			mustDo(t, err)
			return seen{st.Nlink, st.Size, string(buf[:n])}
		}
		out := []seen{look()}
		mustDo(t, os.Truncate(filepath.Join(root, "a"), 2))
		out = append(out, look())
		mustDo(t, os.Remove(filepath.Join(root, "a")))
		return append(out, look())
	}
	k, f := observe(o.k.target), observe(o.f.target)
	for i, stage := range []string{"opened", "after truncate", "after unlink"} {
		if k[i] != f[i] {
			t.Errorf("%s: kernel %+v, fusefs %+v", stage, k[i], f[i])
		}
	}
	o.same("b", false)

}

// TestHardLinkCopiedUpThroughDescriptor: a lower hard link opened for
// writing, copied up, then changed both by name and through the
// descriptor shows one file both ways, as under the kernel (where it is
// one inode; fusefs gives the kernel two, and tells each of the other's
// changes).
func TestHardLinkCopiedUpThroughDescriptor(t *testing.T) {
	testutil.RequireRoot(t)
	run := func(t *testing.T, mount func(s *stack)) (byName, byFd int64) {
		s := newStack(t, t.TempDir(), 1)
		writeFiles(t, s.lowers[0], map[string]string{"h1": "lower data"})
		mustDo(t, os.Link(filepath.Join(s.lowers[0], "h1"), filepath.Join(s.lowers[0], "h2")))
		mount(s)
		p := filepath.Join(s.target, "h1")
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		mustDo(t, err)
		defer f.Close()
		_, err = f.WriteAt([]byte("x"), 0) // copy-up (at the latest)
		mustDo(t, err)
		mustDo(t, os.Truncate(p, 100))
		_, err = f.WriteAt(make([]byte, 5000), 5)
		mustDo(t, err)
		st, err := os.Lstat(p)
		mustDo(t, err)
		fst, err := f.Stat()
		mustDo(t, err)
		return st.Size(), fst.Size()
	}
	kName, kFd := run(t, func(s *stack) { mountKernel(t, s.spec()) })
	if kName != 5005 || kFd != 5005 {
		t.Fatalf("kernel overlay: size %d by name, %d by descriptor; this test expects 5005", kName, kFd)
	}
	for _, mode := range openModes {
		t.Run(mode.name, func(t *testing.T) {
			byName, byFd := run(t, func(s *stack) {
				testutil.CleanupMount(t, s.target)
				m, err := mountDaemon(context.Background(), s.spec(), mode.opts)
				mustDo(t, err)
				t.Cleanup(func() { m.Unmount() })
			})
			if byName != kName || byFd != kFd {
				t.Errorf("size %d by name, %d by descriptor; kernel %d, %d", byName, byFd, kName, kFd)
			}
		})
	}
}
