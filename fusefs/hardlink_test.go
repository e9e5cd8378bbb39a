package fusefs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
