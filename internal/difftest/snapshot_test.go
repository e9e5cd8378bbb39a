package difftest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestBuildStackIsDeterministic builds the fixture twice and finds every
// layer identical, including owners, modes, mtimes, whiteouts and xattrs.
func TestBuildStackIsDeterministic(t *testing.T) {
	testutil.RequireRoot(t) // trusted.overlay.opaque and owners need root
	dir := t.TempDir()
	a, err := BuildStack(filepath.Join(dir, "a"), layer.Trusted)
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildStack(filepath.Join(dir, "b"), layer.Trusted)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Lowers {
		ta, tb := snapshot(t, a.Lowers[i]), snapshot(t, b.Lowers[i])
		if d := Diff(ta, tb, "a", "b"); len(d) > 0 {
			t.Errorf("layer %s differs between two builds:\n%s", a.Lowers[i], strings.Join(d, "\n"))
		}
	}
	// The middle layer holds the whiteouts and the opaque directory in
	// the kernel's format.
	mid := snapshot(t, a.Lowers[1])
	if n := mid["gone"]; n.Type != "chardev" || n.Rdev != 0 {
		t.Errorf("l1/gone = %+v, want a 0/0 character device whiteout", n)
	}
	if v := mid["opq"].Xattrs["trusted.overlay.opaque"]; v != "y" {
		t.Errorf("l1/opq has trusted.overlay.opaque=%q, want y", v)
	}
}

// TestDiffFindsPlantedDifference changes one detail of one of two
// identical trees at a time and expects Diff to name the path and what
// differs: the comparer can fail.
func TestDiffFindsPlantedDifference(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name  string
		path  string
		field string // the words the diff line must contain
		plant func(root string) error
	}{
		{"content, same size", "a.txt", "content sha256", func(r string) error {
			return writeAt(filepath.Join(r, "a.txt"), []byte("Z"), 50)
		}},
		{"size", "b.bin", "size", func(r string) error { return os.Truncate(filepath.Join(r, "b.bin"), 1) }},
		{"mode", "exec.sh", "mode", func(r string) error { return os.Chmod(filepath.Join(r, "exec.sh"), 0o700) }},
		{"owner", "ro", "owner", func(r string) error { return os.Lchown(filepath.Join(r, "ro"), 1000, 0) }},
		{"nlink", "hl2", "nlink", func(r string) error { return os.Link(filepath.Join(r, "hl1"), filepath.Join(r, "hl9")) }},
		{"hard link split", "hl2", "hard links", func(r string) error {
			p := filepath.Join(r, "hl2")
			b, err := os.ReadFile(p)
			if err == nil {
				err = os.Remove(p)
			}
			if err == nil {
				err = os.WriteFile(p, b, 0o644)
			}
			return err
		}},
		{"symlink target", "link-rel", "symlink target", func(r string) error {
			os.Remove(filepath.Join(r, "link-rel"))
			return os.Symlink("b.bin", filepath.Join(r, "link-rel"))
		}},
		{"xattr value", "xa", "xattrs", func(r string) error {
			return unix.Lsetxattr(filepath.Join(r, "xa"), "user.a", []byte("2"), 0)
		}},
		{"xattr added to dir", "d1", "xattrs", func(r string) error {
			return unix.Lsetxattr(filepath.Join(r, "d1"), "user.new", nil, 0)
		}},
		{"old mtime changed", "empty", "mtime", func(r string) error {
			t := unix.NsecToTimespec(1e18)
			return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(r, "empty"), []unix.Timespec{t, t}, 0)
		}},
		{"missing file", "d1/d2/d3/deep.txt", "only under a", func(r string) error {
			return os.Remove(filepath.Join(r, "d1/d2/d3/deep.txt"))
		}},
		{"extra file", "emptydir/new", "only under b", func(r string) error {
			return os.WriteFile(filepath.Join(r, "emptydir/new"), nil, 0o644)
		}},
		{"type", "fifo", "type", func(r string) error {
			os.Remove(filepath.Join(r, "fifo"))
			return os.WriteFile(filepath.Join(r, "fifo"), nil, 0o644)
		}},
	}
	dir := t.TempDir()
	a, err := BuildStack(filepath.Join(dir, "a"), layer.Trusted)
	if err != nil {
		t.Fatal(err)
	}
	orig := snapshot(t, a.Lowers[2])
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := BuildStack(filepath.Join(dir, "b", string(rune('a'+i))), layer.Trusted)
			if err != nil {
				t.Fatal(err)
			}
			root := b.Lowers[2] // the bottom layer: most of the fixture
			if d := Diff(orig, snapshot(t, root), "a", "b"); len(d) > 0 {
				t.Fatalf("before planting, trees differ:\n%s", strings.Join(d, "\n"))
			}
			if err := tt.plant(root); err != nil {
				t.Fatal(err)
			}
			d := Diff(orig, snapshot(t, root), "a", "b")
			ok := slices.ContainsFunc(d, func(line string) bool {
				return strings.HasPrefix(line, `"`+tt.path+`": `) && strings.Contains(line, tt.field)
			})
			if !ok {
				t.Errorf("planted %s at %s; diff does not report it:\n%s", tt.name, tt.path, strings.Join(d, "\n"))
			}
		})
	}
}

// TestOverlayXattrsFound shows that a tree showing the stack's own
// metadata xattrs is reported, and another namespace's is not.
func TestOverlayXattrsFound(t *testing.T) {
	tr := Tree{"d": {Type: "dir", Xattrs: map[string]string{"trusted.overlay.opaque": "y", "user.x": "1"}}}
	if got := OverlayXattrs(tr, "trusted"); len(got) != 1 || !strings.Contains(got[0], "trusted.overlay.opaque") {
		t.Errorf("OverlayXattrs(trusted) = %q, want the opaque xattr", got)
	}
	if got := OverlayXattrs(tr, "user"); len(got) != 0 {
		t.Errorf("OverlayXattrs(user) = %q, want none", got)
	}
}

func snapshot(t *testing.T, dir string) Tree {
	t.Helper()
	tr, err := Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func writeAt(p string, b []byte, off int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestLinkGroupsFindClash: two different files that show one inode number
// are reported, two names of one file are hard links.
func TestLinkGroupsFindClash(t *testing.T) {
	tr := Tree{
		"a": {Type: "file", Size: 3, Hash: "x", Nlink: 2, ino: 7},
		"b": {Type: "file", Size: 3, Hash: "x", Nlink: 2, ino: 7},
		"c": {Type: "file", Size: 4, Hash: "y", Nlink: 1, ino: 9},
		"d": {Type: "file", Size: 5, Hash: "z", Nlink: 1, ino: 9},
	}
	linkGroups(tr)
	if tr["a"].Links != "b" || tr["b"].Links != "a" || tr["a"].Clash != "" {
		t.Errorf("a, b: Links %q %q, Clash %q; want each other and no clash", tr["a"].Links, tr["b"].Links, tr["a"].Clash)
	}
	if tr["d"].Clash == "" {
		t.Errorf("d shares inode 9 with c but differs; Clash is empty")
	}
	if d := Diff(Tree{"a": tr["a"]}, Tree{"a": {Type: "file", Size: 3, Hash: "x", Nlink: 2}}, "x", "y"); len(d) != 1 {
		t.Errorf("a link that y lost: diff %q, want one line", d)
	}
	if d := Diff(Tree{"a": {Type: "file", Size: 3, Hash: "x", Nlink: 2}}, Tree{"a": tr["a"]}, "x", "y"); len(d) != 0 {
		t.Errorf("a link that only y shows: diff %q, want none", d)
	}
}
