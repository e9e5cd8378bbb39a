package fusefs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestSymlinksStayInside checks that a layer full of symlinks pointing
// out of it (to /etc, ../../.., absolute paths into a directory the test
// owns) cannot make any operation through the mount read or write
// outside the layers: the daemon never follows a symlink of a layer.
func TestSymlinksStayInside(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	writeFiles(t, outside, map[string]string{"secret": "outside-data", "sub/x": "x"})
	s := newStack(t, filepath.Join(dir, "stack"), 1)
	// The mount sits one level deeper than the layer, so a relative link
	// resolved by the caller from the mount lands elsewhere (nowhere)
	// than the same link resolved from the layer directory (outside):
	// an operation through it reaching outside means the daemon followed it.
	s.target = filepath.Join(dir, "stack", "m", "nt")
	mustDo(t, os.MkdirAll(s.target, 0o755))
	l := s.lowers[0]
	writeFiles(t, l, map[string]string{
		"etc":        "->/etc",
		"up":         "->../../..",
		"abs":        "->" + outside,
		"abssecret":  "->" + filepath.Join(outside, "secret"),
		"d/up":       "->../../../outside",
		"d/dangling": "->/nonexistent/file",
		"real":       "inside",
	})
	mountFuse(t, s.spec())
	mnt := s.target
	before := snapshotTree(t, outside)

	// Every symlink is shown as a symlink with its target, unresolved.
	for _, name := range []string{"etc", "up", "abs", "abssecret", "d/up"} {
		var st unix.Stat_t
		mustDo(t, unix.Lstat(filepath.Join(mnt, name), &st))
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("%s: mode %o, want a symlink", name, st.Mode)
		}
	}
	// Operations on the links themselves, which a daemon that followed
	// them would apply outside.
	ops := []struct {
		name string
		op   func() error
	}{
		{"lchown", func() error { return os.Lchown(filepath.Join(mnt, "abssecret"), 1, 1) }},
		{"lsetxattr", func() error { return unix.Lsetxattr(filepath.Join(mnt, "abs"), "trusted.x", []byte("1"), 0) }},
		{"lutimes", func() error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(mnt, "abssecret"), []unix.Timespec{{Sec: 1}, {Sec: 1}}, unix.AT_SYMLINK_NOFOLLOW)
		}},
		{"rename", func() error { return os.Rename(filepath.Join(mnt, "abs"), filepath.Join(mnt, "abs2")) }},
		{"unlink", func() error { return os.Remove(filepath.Join(mnt, "abssecret")) }},
		{"rmdir-link", func() error { return unix.Rmdir(filepath.Join(mnt, "d/up")) }},
		{"link", func() error { return os.Link(filepath.Join(mnt, "up"), filepath.Join(mnt, "uplink")) }},
		{"create-thru", func() error { return os.WriteFile(filepath.Join(mnt, "d/up/new"), []byte("x"), 0o644) }},
		{"mkdir-thru", func() error { return os.Mkdir(filepath.Join(mnt, "d/up/newdir"), 0o755) }},
	}
	for _, o := range ops {
		t.Logf("%s: %v", o.name, o.op())
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "d/up/secret")); err == nil {
		t.Errorf("read through d/up (a link that leaves the layer) gave %q; want ENOENT", b)
	}
	if b, err := os.Readlink(filepath.Join(mnt, "up")); err != nil || string(b) != "../../.." {
		t.Errorf("readlink up: %q %v", b, err)
	}
	after := snapshotTree(t, outside)
	if !bytes.Equal(before, after) {
		t.Errorf("the tree outside the layers changed:\nbefore %s\nafter  %s", before, after)
	}
	// The layers got the changes instead: the upper holds copies of the
	// links, never of their targets.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.upper, "abs2"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("renamed link in the upper: %v, mode %o; want a symlink", err, st.Mode)
	}
	for _, p := range []string{"secret", "newdir", "new"} {
		if _, err := os.Lstat(filepath.Join(s.upper, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("upper/%s exists (%v): a link target was copied into the layer", p, err)
		}
	}
	// openBeneath refuses every way out of a layer (internal/beneath's
	// tests cover the fallback of kernels before 5.6).
	fd, err := unix.Open(l, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	mustDo(t, err)
	defer unix.Close(fd)
	for _, rel := range []string{"etc/passwd", "up/etc/passwd", "abs/secret", "d/up/secret", "../stack", "abs", "abssecret", "d/../../outside/secret"} {
		if g, err := openBeneath(fd, rel, unix.O_RDONLY); err == nil {
			unix.Close(g)
			t.Errorf("openBeneath(%q) opened something; want an error", rel)
		}
	}
	if g, err := openBeneath(fd, "real", unix.O_RDONLY); err != nil {
		t.Errorf("openBeneath(real): %v", err)
	} else {
		unix.Close(g)
	}
}

// snapshotTree describes every entry under root: names, modes, owners,
// times, contents, xattrs.
func snapshotTree(t testing.TB, root string) []byte {
	t.Helper()
	var b bytes.Buffer
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		m := readMeta(t, p)
		b.WriteString(p + " ")
		b.WriteString(fmtMeta(m))
		b.WriteByte('\n')
		return nil
	})
	mustDo(t, err)
	return b.Bytes()
}

func fmtMeta(m meta) string {
	return string(must(jsonMarshal(m)))
}
