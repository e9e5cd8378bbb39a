package fusefs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
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

// hardLinkAgainstKernel runs do on a stack whose lower has the hard
// links h1 and h2 ("lower data") and a directory dir: under kernel
// overlay, then under fusefs in each open mode, failing a mode whose
// observations (what do returns) differ from the kernel's. It returns
// the kernel's, for the test to check the scenario itself.
func hardLinkAgainstKernel(t *testing.T, do func(t *testing.T, target string) string) string {
	t.Helper()
	testutil.RequireRoot(t)
	run := func(t *testing.T, mount func(s *stack)) string {
		s := newStack(t, t.TempDir(), 1)
		writeFiles(t, s.lowers[0], map[string]string{"h1": "lower data", "dir/": ""})
		mustDo(t, os.Link(filepath.Join(s.lowers[0], "h1"), filepath.Join(s.lowers[0], "h2")))
		mount(s)
		return do(t, s.target)
	}
	kernel := run(t, func(s *stack) { mountKernel(t, s.spec()) })
	for _, mode := range openModes {
		t.Run(mode.name, func(t *testing.T) {
			got := run(t, func(s *stack) {
				testutil.CleanupMount(t, s.target)
				m, err := mountDaemon(context.Background(), reexec.Self(), s.spec(), mode.opts)
				mustDo(t, err)
				t.Cleanup(func() { m.Unmount() })
			})
			if got != kernel {
				t.Errorf("fusefs: %s\nkernel: %s", got, kernel)
			}
		})
	}
	return kernel
}

// copyUpThroughDescriptor opens p, a lower hard link, for appending and
// copies it up through that descriptor with a one-byte write.
func copyUpThroughDescriptor(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	mustDo(t, err)
	if _, err := f.Write([]byte("x")); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return f
}

// sizes reports the size of name and of the file open at f.
func sizes(t *testing.T, name string, f *os.File) string {
	st, err := os.Lstat(name)
	mustDo(t, err)
	fst, err := f.Stat()
	mustDo(t, err)
	return fmt.Sprintf("size %d by name, %d by descriptor (mode %v)", st.Size(), fst.Size(), fst.Mode())
}

// TestHardLinkCopiedUpThroughDescriptor: a lower hard link opened for
// writing, copied up, then changed both by name and through the
// descriptor shows one file both ways, as under the kernel (where it is
// one inode; fusefs gives the kernel two, and tells each of the other's
// changes).
func TestHardLinkCopiedUpThroughDescriptor(t *testing.T) {
	kernel := hardLinkAgainstKernel(t, func(t *testing.T, target string) string {
		p := filepath.Join(target, "h1")
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		mustDo(t, err)
		defer f.Close()
		_, err = f.WriteAt([]byte("x"), 0) // copy-up (at the latest)
		mustDo(t, err)
		mustDo(t, os.Truncate(p, 100))
		_, err = f.WriteAt(make([]byte, 5000), 5)
		mustDo(t, err)
		return sizes(t, p, f)
	})
	if want := "size 5005 by name, 5005 by descriptor (mode -rw-r--r--)"; kernel != want {
		t.Fatalf("kernel overlay: %s; this test expects %s", kernel, want)
	}
}

// TestHardLinkRenamedAfterCopyUpThroughDescriptor: a lower hard link
// copied up through an open descriptor and then renamed is still the
// file the descriptor shows (mode, size), as under the kernel. Found by
// the differential stress run (seed 2000067).
func TestHardLinkRenamedAfterCopyUpThroughDescriptor(t *testing.T) {
	hardLinkAgainstKernel(t, func(t *testing.T, target string) string {
		f := copyUpThroughDescriptor(t, filepath.Join(target, "h1"))
		defer f.Close()
		g1 := filepath.Join(target, "dir/g1")
		mustDo(t, os.Rename(filepath.Join(target, "h1"), g1))
		mustDo(t, os.WriteFile(g1, []byte("yyyyyyyyyyyyyyyyyyyy"), 0))
		return sizes(t, g1, f)
	})
}

// TestHardLinkAppendAfterChangeByName: an append through a descriptor
// of a lower hard link copied up through it lands at the file's end
// after the file grew by name, as under the kernel. Found by the
// differential stress run (seed 3000184).
func TestHardLinkAppendAfterChangeByName(t *testing.T) {
	hardLinkAgainstKernel(t, func(t *testing.T, target string) string {
		p := filepath.Join(target, "h1")
		f := copyUpThroughDescriptor(t, p)
		defer f.Close()
		g, err := os.OpenFile(p, os.O_WRONLY, 0)
		mustDo(t, err)
		_, err = g.WriteAt(make([]byte, 100), 7)
		mustDo(t, err)
		mustDo(t, g.Close())
		_, err = f.Write(make([]byte, 5000))
		mustDo(t, err)
		data, err := os.ReadFile(p)
		mustDo(t, err)
		return fmt.Sprintf("%s, %d bytes read", sizes(t, p, f), len(data))
	})
}

// TestHardLinkLinkedAfterCopyUpThroughDescriptor: a lower hard link
// copied up through an open descriptor, then linked to a new name, is
// still the file the descriptor shows, as under the kernel. Found by
// the differential stress run (seed 547585883, as uid 65534).
func TestHardLinkLinkedAfterCopyUpThroughDescriptor(t *testing.T) {
	hardLinkAgainstKernel(t, func(t *testing.T, target string) string {
		p := filepath.Join(target, "h1")
		f := copyUpThroughDescriptor(t, p)
		defer f.Close()
		mustDo(t, unix.Lsetxattr(p, "user.t0", []byte("y"), 0))
		mustDo(t, os.Link(p, filepath.Join(target, "dir/n16")))
		var st unix.Stat_t
		mustDo(t, unix.Fstat(int(f.Fd()), &st))
		return fmt.Sprintf("%s, nlink %d", sizes(t, p, f), st.Nlink)
	})
}
