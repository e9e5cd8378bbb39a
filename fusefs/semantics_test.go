package fusefs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// The semantic tests do the same thing on two identical stacks, one under
// kernel overlayfs (the oracle) and one under fusefs, and compare what a
// program sees: errno, metadata, listings, and the layers left on disk.

// mountKernel mounts spec with kernel overlayfs; unmounted at the end.
func mountKernel(t testing.TB, spec layer.Spec) {
	t.Helper()
	opts := "lowerdir=" + strings.Join(spec.Lowers, ":")
	if spec.Upper != "" {
		opts += ",upperdir=" + spec.Upper + ",workdir=" + spec.Work
	}
	testutil.CleanupMount(t, spec.Target)
	if err := unix.Mount("overlay", spec.Target, "overlay", 0, opts); err != nil {
		t.Fatalf("kernel overlay mount %s: %v", opts, err)
	}
}

// oracle is a pair of identical stacks: k under the kernel, f under fusefs.
type oracle struct {
	t    *testing.T
	k, f *stack
}

// newOracle builds two identical stacks with build and mounts them.
// readOnly leaves the upper out.
func newOracle(t *testing.T, lowers int, readOnly bool, build func(s *stack)) *oracle {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	o := &oracle{t: t, k: newStack(t, filepath.Join(dir, "k"), lowers), f: newStack(t, filepath.Join(dir, "f"), lowers)}
	for _, s := range []*stack{o.k, o.f} {
		build(s)
		spec := s.spec()
		if readOnly {
			spec.Upper, spec.Work = "", ""
		}
		if s == o.k {
			mountKernel(t, spec)
		} else {
			mountFuse(t, spec)
		}
	}
	return o
}

// do runs op on both mounts and fails unless both give the same errno.
func (o *oracle) do(what string, op func(root string) error) error {
	o.t.Helper()
	ek := op(o.k.target)
	ef := op(o.f.target)
	if errnoOf(ek) != errnoOf(ef) {
		o.t.Errorf("%s: kernel %v, fusefs %v", what, ek, ef)
	}
	return ef
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

// meta is what a program sees of one file, without inode numbers and
// change times, which legitimately differ.
type meta struct {
	Mode     uint32
	Uid, Gid uint32
	Nlink    uint64
	Size     int64
	Mtime    int64
	Rdev     uint64
	Content  string
	Link     string
	Xattrs   string
}

func readMeta(t testing.TB, p string) meta {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	m := meta{Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Nlink: st.Nlink, Size: st.Size, Mtime: st.Mtim.Nano(), Rdev: st.Rdev}
	if time.Since(time.Unix(0, m.Mtime)) < time.Hour {
		m.Mtime = -1 // set by this test: "recent" on both sides
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		m.Content = fmt.Sprintf("%x", sha256.Sum256(b))
	case unix.S_IFLNK:
		m.Link, _ = os.Readlink(p)
	}
	names, _ := layer.ListXattrs(p)
	sort.Strings(names)
	for _, n := range names {
		if layer.IsOverlayXattr(n) && n != layer.Trusted.Xattr(layer.KeyOpaque) && !strings.HasPrefix(n, layer.Trusted.Xattr("overlay.")) {
			// The kernel's bookkeeping (origin, impure) is not the
			// format's: only opaque and escaped names matter.
			continue
		}
		v, _ := layer.GetXattr(p, n)
		m.Xattrs += n + "=" + string(v) + ";"
	}
	return m
}

// same compares a path under both mounts (or both uppers, with upper).
func (o *oracle) same(rel string, upper bool) {
	o.t.Helper()
	k, f := o.k.target, o.f.target
	if upper {
		k, f = o.k.upper, o.f.upper
	}
	mk, mf := readMeta(o.t, filepath.Join(k, rel)), readMeta(o.t, filepath.Join(f, rel))
	if mk != mf {
		where := "mount"
		if upper {
			where = "upper"
		}
		o.t.Errorf("%s %q:\n kernel %+v\n fusefs %+v", where, rel, mk, mf)
	}
}

var fixedTime = time.Date(2015, 1, 2, 3, 4, 5, 6, time.UTC)

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCopyUpPreservesMetadata(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		l := s.lowers[0]
		writeFiles(t, l, map[string]string{"f": strings.Repeat("data", 5000), "g": "gg", "d/h": "hh", "sym": "->f"})
		for _, p := range []string{"f", "g", "d/h", "d"} {
			full := filepath.Join(l, p)
			mustDo(t, os.Chown(full, 1234, 5678))
			mustDo(t, unix.Lsetxattr(full, "user.test", []byte("v-"+p), 0))
			mustDo(t, unix.Lsetxattr(full, "trusted.overlay.private", []byte("x"), 0))
			mustDo(t, os.Chtimes(full, fixedTime, fixedTime))
		}
		mustDo(t, os.Chmod(filepath.Join(l, "f"), 0o4751))
		mustDo(t, os.Chmod(filepath.Join(l, "g"), 0o640))
		mustDo(t, unix.Mknod(filepath.Join(l, "fifo"), unix.S_IFIFO|0o600, 0))
	})
	cases := []struct {
		name string
		op   func(root string) error
	}{
		{"append", func(r string) error {
			f, err := os.OpenFile(filepath.Join(r, "f"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("tail")
			return err
		}},
		{"setxattr", func(r string) error { return unix.Lsetxattr(filepath.Join(r, "g"), "user.new", []byte("n"), 0) }},
		{"chown-in-subdir", func(r string) error { return os.Lchown(filepath.Join(r, "d/h"), 42, 43) }},
		{"utimes-symlink", func(r string) error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(r, "sym"), []unix.Timespec{{Sec: 7}, {Sec: 8}}, unix.AT_SYMLINK_NOFOLLOW)
		}},
		{"chmod-fifo", func(r string) error { return os.Chmod(filepath.Join(r, "fifo"), 0o644) }},
	}
	for _, c := range cases {
		o.do(c.name, c.op)
	}
	for _, p := range []string{"f", "g", "d", "d/h", "sym", "fifo"} {
		o.same(p, false)
		o.same(p, true)
	}
}

// TestLargeReads reads files big enough for the daemon to splice its
// replies (spliceRead), one ending mid-page, before and after a copy-up
// with a reader opened before it, and compares with kernel overlay.
func TestLargeReads(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	o := newOracle(t, 1, false, func(s *stack) {
		mustDo(t, os.WriteFile(filepath.Join(s.lowers[0], "big"), data, 0o644))
	})
	for _, root := range []string{o.k.target, o.f.target} {
		r, err := os.Open(filepath.Join(root, "big"))
		mustDo(t, err)
		defer r.Close()
		if got := must(io.ReadAll(r)); !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes, not the lower's %d", root, len(got), len(data))
		}
		w, err := os.OpenFile(filepath.Join(root, "big"), os.O_WRONLY|os.O_APPEND, 0)
		mustDo(t, err)
		_, err = w.WriteString("tail")
		mustDo(t, err)
		mustDo(t, w.Close())
		got := make([]byte, len(data)+10)
		n, err := r.ReadAt(got, 0)
		if err != io.EOF || !bytes.Equal(got[:n], append(data[:len(data):len(data)], "tail"...)) {
			t.Errorf("%s: reader opened before the copy-up read %d bytes (%v), want the lower's %d and the append", root, n, err, len(data))
		}
	}
	o.same("big", false)
	o.same("big", true)
}

// TestTmpfile makes O_TMPFILE files in a lower directory (copied up
// for it), links one into place by /proc/self/fd and writes through its
// descriptor after, and drops the other, against kernel overlay: the
// link counts the descriptors see, the merged tree and the upper.
func TestTmpfile(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"d/old": "o"})
	})
	for _, root := range []string{o.k.target, o.f.target} {
		var nlinks []uint64
		nlink := func(fd int) {
			var st unix.Stat_t
			mustDo(t, unix.Fstat(fd, &st))
			nlinks = append(nlinks, st.Nlink)
		}
		fd, err := unix.Open(filepath.Join(root, "d"), unix.O_TMPFILE|unix.O_RDWR, 0o640)
		mustDo(t, err)
		_, err = unix.Write(fd, []byte("before the link;"))
		mustDo(t, err)
		nlink(fd)
		mustDo(t, unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, filepath.Join(root, "d/new"), unix.AT_SYMLINK_FOLLOW))
		_, err = unix.Write(fd, []byte("after"))
		mustDo(t, err)
		nlink(fd)
		mustDo(t, unix.Close(fd))
		dropped, err := unix.Open(filepath.Join(root, "d"), unix.O_TMPFILE|unix.O_WRONLY, 0o600)
		mustDo(t, err)
		nlink(dropped)
		mustDo(t, unix.Close(dropped))
		if want := []uint64{0, 1, 0}; !slices.Equal(nlinks, want) {
			t.Errorf("%s: link counts %v, want %v", root, nlinks, want)
		}
	}
	for _, p := range []string{"d", "d/new", "d/old"} {
		o.same(p, false)
	}
	o.same("d/new", true)
	for _, s := range []*stack{o.k, o.f} {
		ents, err := os.ReadDir(filepath.Join(s.upper, "d"))
		mustDo(t, err)
		if len(ents) != 1 || ents[0].Name() != "new" {
			t.Errorf("%s: upper d holds %v, want only new", s.upper, ents)
		}
	}
}

// TestCopyUpUnderDefaultACL copies up files of a directory whose lower
// copy has a default ACL (so its upper copy gets one too). A new file
// there inherits an access ACL from it; a copy-up must not: the copy
// carries the lower file's ACL or none, and the mode the lower file
// has, as on the kernel's overlay. Nor may a copy inherit the work
// dir's default ACL.
func TestCopyUpUnderDefaultACL(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		l := s.lowers[0]
		writeFiles(t, l, map[string]string{"d/plain": "p", "d/withacl": "a", "e/f": "f"})
		mustDo(t, unix.Setxattr(s.work, "system.posix_acl_default", testACL(0o7), 0))
		mustDo(t, unix.Setxattr(filepath.Join(l, "d"), "system.posix_acl_default", testACL(0o5), 0))
		mustDo(t, unix.Setxattr(filepath.Join(l, "d/withacl"), "system.posix_acl_access", testACL(0o4), 0))
		mustDo(t, os.Chmod(filepath.Join(l, "d/plain"), 0o640))
	})
	for _, name := range []string{"d/plain", "d/withacl", "e/f"} {
		o.do("append to "+name, func(r string) error {
			f, err := os.OpenFile(filepath.Join(r, name), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("+")
			return err
		})
	}
	for _, p := range []string{"d", "d/plain", "d/withacl", "e", "e/f"} {
		o.same(p, false)
		o.same(p, true)
	}
}

// testACL is a POSIX ACL in its xattr form (Linux:
// include/uapi/linux/posix_acl_xattr.h) granting user 1000 userPerm.
func testACL(userPerm uint16) []byte {
	const undefined = 0xffffffff
	entries := []struct {
		tag, perm uint16
		id        uint32
	}{{0x01, 6, undefined}, {0x02, userPerm, 1000}, {0x04, 4, undefined}, {0x10, 7, undefined}, {0x20, 4, undefined}}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

func TestWhiteoutAndOpaqueOnDisk(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"f": "f", "d/a": "a", "d/sub/b": "b", "e/x": "x"})
	})
	o.do("unlink", func(r string) error { return os.Remove(filepath.Join(r, "f")) })
	o.do("rm -r", func(r string) error { return os.RemoveAll(filepath.Join(r, "d")) })
	o.do("mkdir over whiteout", func(r string) error { return os.Mkdir(filepath.Join(r, "d"), 0o755) })
	o.do("create in new dir", func(r string) error { return os.WriteFile(filepath.Join(r, "d/new"), []byte("n"), 0o644) })
	o.do("rmdir merged", func(r string) error { return os.RemoveAll(filepath.Join(r, "e")) })
	for _, s := range []*stack{o.k, o.f} {
		var st unix.Stat_t
		for _, p := range []string{"f", "e"} {
			mustDo(t, unix.Lstat(filepath.Join(s.upper, p), &st))
			if !layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
				t.Errorf("%s: upper %s is not a 0/0 whiteout: mode %o rdev %d", s.dir, p, st.Mode, st.Rdev)
			}
		}
		v, err := layer.GetXattr(filepath.Join(s.upper, "d"), layer.Trusted.Xattr(layer.KeyOpaque))
		if err != nil || string(v) != "y" {
			t.Errorf("%s: upper d not opaque: %q %v", s.dir, v, err)
		}
	}
	o.same("d", false)
	o.same("d/new", true)
	for _, p := range []string{"f", "e", "d/a", "d/sub"} {
		o.do("lstat "+p, func(r string) error {
			var st unix.Stat_t
			return unix.Lstat(filepath.Join(r, p), &st)
		})
	}
}

// listing is a directory's names with their types, sorted.
func listing(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name()+":"+e.Type().String())
	}
	sort.Strings(out)
	return out
}

func TestReaddirMerge(t *testing.T) {
	o := newOracle(t, 3, false, func(s *stack) {
		writeFiles(t, s.lowers[2], map[string]string{"a": "2", "b": "2", "dir/x": "2", "dir/y": "2", "odir/p": "2", "gone": "2", "t/": ""})
		writeFiles(t, s.lowers[1], map[string]string{"b": "1", "c": "1", "dir/z": "1", "odir/q": "1", "t": "file-over-dir"})
		writeFiles(t, s.lowers[0], map[string]string{"d": "0", "dir/w": "0"})
		fd, err := unix.Open(s.lowers[1], unix.O_RDONLY|unix.O_DIRECTORY, 0)
		mustDo(t, err)
		mustDo(t, layer.MakeWhiteout(fd, "gone", layer.Trusted))
		unix.Close(fd)
		fd, err = unix.Open(filepath.Join(s.lowers[1], "dir"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		mustDo(t, err)
		mustDo(t, layer.MakeWhiteout(fd, "y", layer.Trusted))
		unix.Close(fd)
		fd, err = unix.Open(filepath.Join(s.lowers[1], "odir"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		mustDo(t, err)
		mustDo(t, layer.MakeOpaque(fd, layer.Trusted))
		unix.Close(fd)
	})
	o.do("create", func(r string) error { return os.WriteFile(filepath.Join(r, "dir/new"), nil, 0o644) })
	o.do("unlink lower", func(r string) error { return os.Remove(filepath.Join(r, "dir/x")) })
	for _, d := range []string{".", "dir", "odir"} {
		k, f := listing(t, filepath.Join(o.k.target, d)), listing(t, filepath.Join(o.f.target, d))
		if strings.Join(k, " ") != strings.Join(f, " ") {
			t.Errorf("listing %s:\n kernel %v\n fusefs %v", d, k, f)
		}
	}
	// Inode numbers from readdir are the ones stat gives.
	ents, err := readDirInos(filepath.Join(o.f.target, "dir"))
	mustDo(t, err)
	for name, ino := range ents {
		var st unix.Stat_t
		mustDo(t, unix.Lstat(filepath.Join(o.f.target, "dir", name), &st))
		if st.Ino != ino {
			t.Errorf("%s: readdir ino %d, stat ino %d", name, ino, st.Ino)
		}
	}
}

// readDirInos lists dir with the inode numbers getdents gives.
func readDirInos(dir string) (map[string]uint64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	ents, err := layer.List(layer.Dirs{{Fd: fd}}, 0)
	out := map[string]uint64{}
	for _, e := range ents {
		out[e.Name] = e.Ino
	}
	return out, err
}

func TestRenameDirectory(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"low/a": "a", "f": "f", "other/": ""})
	})
	o.do("mkdir", func(r string) error { return os.Mkdir(filepath.Join(r, "up"), 0o755) })
	o.do("fill", func(r string) error { return os.WriteFile(filepath.Join(r, "up/x"), []byte("x"), 0o644) })
	if err := o.do("rename lower dir", func(r string) error { return os.Rename(filepath.Join(r, "low"), filepath.Join(r, "low2")) }); !errors.Is(err, unix.EXDEV) {
		t.Errorf("rename of a lower directory: %v, want EXDEV", err)
	}
	o.do("rename upper dir", func(r string) error { return os.Rename(filepath.Join(r, "up"), filepath.Join(r, "up2")) })
	o.do("rename upper dir over lower dir", func(r string) error { return os.Rename(filepath.Join(r, "up2"), filepath.Join(r, "other")) })
	o.do("rename lower file", func(r string) error { return os.Rename(filepath.Join(r, "f"), filepath.Join(r, "other/f")) })
	for _, d := range []string{".", "other"} {
		k, f := listing(t, filepath.Join(o.k.target, d)), listing(t, filepath.Join(o.f.target, d))
		if strings.Join(k, " ") != strings.Join(f, " ") {
			t.Errorf("listing %s:\n kernel %v\n fusefs %v", d, k, f)
		}
	}
	for _, p := range []string{"other/x", "other/f", "up2", "f", "low/a"} {
		o.do("lstat "+p, func(r string) error {
			var st unix.Stat_t
			return unix.Lstat(filepath.Join(r, p), &st)
		})
	}
}

func TestNlinkAfterCopyUp(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"a": "shared"})
		mustDo(t, os.Link(filepath.Join(s.lowers[0], "a"), filepath.Join(s.lowers[0], "b")))
	})
	o.same("a", false)
	o.do("chmod a", func(r string) error { return os.Chmod(filepath.Join(r, "a"), 0o600) })
	o.same("a", false)
	o.same("b", false)
	o.do("link a c", func(r string) error { return os.Link(filepath.Join(r, "a"), filepath.Join(r, "c")) })
	o.same("a", false)
	o.same("c", false)
	o.do("write b", func(r string) error { return os.WriteFile(filepath.Join(r, "b"), []byte("b only"), 0o644) })
	o.same("a", false)
	o.same("b", false)
}

func TestNameTooLong(t *testing.T) {
	t.Parallel() // beside the package's other long tests
	o := newOracle(t, 1, false, func(s *stack) { writeFiles(t, s.lowers[0], map[string]string{"d/f": "f"}) })
	for _, n := range []int{255, 256, 1000, 5000} {
		name := strings.Repeat("n", n)
		o.do("create "+string(rune('0'+n%10)), func(r string) error {
			return os.WriteFile(filepath.Join(r, "d", name), nil, 0o644)
		})
		o.do("lstat", func(r string) error {
			var st unix.Stat_t
			return unix.Lstat(filepath.Join(r, name), &st)
		})
		o.do("mkdir", func(r string) error { return os.Mkdir(filepath.Join(r, name), 0o755) })
	}
	long := strings.Repeat("p/", 2100)
	o.do("PATH_MAX", func(r string) error { return os.MkdirAll(filepath.Join(r, long), 0o755) })
}

func TestXattrHiding(t *testing.T) {
	o := newOracle(t, 1, false, func(s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"f": "f"})
		mustDo(t, unix.Lsetxattr(filepath.Join(s.lowers[0], "f"), "trusted.overlay.origin", []byte("zz"), 0))
		mustDo(t, unix.Lsetxattr(filepath.Join(s.lowers[0], "f"), "user.visible", []byte("v"), 0))
	})
	o.same("f", false)
	o.do("getxattr private", func(r string) error {
		_, err := unix.Lgetxattr(filepath.Join(r, "f"), "trusted.overlay.origin", nil)
		return err
	})
	o.do("set private", func(r string) error {
		return unix.Lsetxattr(filepath.Join(r, "f"), "trusted.overlay.mine", []byte("m"), 0)
	})
	o.same("f", false)
	o.same("f", true)
	names, err := layer.ListXattrs(filepath.Join(o.f.target, "f"))
	mustDo(t, err)
	for _, n := range names {
		if n == "trusted.overlay.origin" {
			t.Errorf("fusefs shows the overlay's own xattr %s", n)
		}
	}
}

func TestReadOnlyStack(t *testing.T) {
	o := newOracle(t, 2, true, func(s *stack) {
		writeFiles(t, s.lowers[1], map[string]string{"f": "f", "d/x": "x"})
	})
	ops := map[string]func(r string) error{
		"create":   func(r string) error { return os.WriteFile(filepath.Join(r, "new"), nil, 0o644) },
		"write":    func(r string) error { return os.WriteFile(filepath.Join(r, "f"), []byte("w"), 0o644) },
		"unlink":   func(r string) error { return os.Remove(filepath.Join(r, "f")) },
		"rmdir":    func(r string) error { return os.Remove(filepath.Join(r, "d")) },
		"chmod":    func(r string) error { return os.Chmod(filepath.Join(r, "f"), 0o600) },
		"setxattr": func(r string) error { return unix.Setxattr(filepath.Join(r, "f"), "user.x", []byte("1"), 0) },
		"rename":   func(r string) error { return os.Rename(filepath.Join(r, "f"), filepath.Join(r, "g")) },
	}
	for name, op := range ops {
		if err := o.do(name, op); !errors.Is(err, unix.EROFS) {
			t.Errorf("%s on a read-only stack: %v, want EROFS", name, err)
		}
	}
	o.same("d/x", false)
	var sk, sf unix.Statfs_t
	mustDo(t, unix.Statfs(o.f.target, &sf))
	mustDo(t, unix.Statfs(o.f.lowers[0], &sk))
	if sf.Blocks != sk.Blocks || sf.Bsize != sk.Bsize {
		t.Errorf("statfs: fusefs %d blocks of %d, top layer %d of %d", sf.Blocks, sf.Bsize, sk.Blocks, sk.Bsize)
	}
}
