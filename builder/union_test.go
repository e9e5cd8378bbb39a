package builder

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestUnionLookupAgreesWithList checks that the union the file steps see
// answers "is this name there, and what is it?" the same way when asked
// by name (lookup) and when listing (list), for every name any layer has:
// whiteouts of each form, opaque directories, a file over a directory, a
// directory over a file, and names that look like OCI markers.
func TestUnionLookupAgreesWithList(t *testing.T) {
	testutil.RequireRoot(t) // 0/0 devices and trusted.overlay.* xattrs
	dir := t.TempDir()
	top, mid, bottom := filepath.Join(dir, "top"), filepath.Join(dir, "mid"), filepath.Join(dir, "bottom")
	mk := func(p string, dir bool) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if dir {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, []byte(p), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	xattr := func(p, name, value string) {
		t.Helper()
		if err := unix.Lsetxattr(p, name, []byte(value), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{top, mid, bottom} {
		mk(filepath.Join(l, "d"), true)
	}
	// bottom: plain names.
	for _, n := range []string{"a", "b", "c", "fileunderdir", "dirunderfile/x", "opq/x", "gone/x", ".wh..wh..opq", ".wh..wh.plnk", "xwh"} {
		mk(filepath.Join(bottom, "d", n), n == "fileunderdir")
	}
	// mid: a device whiteout, an xattr whiteout, an opaque directory.
	if err := unix.Mknod(filepath.Join(mid, "d", "a"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	mk(filepath.Join(mid, "d", "xwh"), false)
	os.Truncate(filepath.Join(mid, "d", "xwh"), 0)
	xattr(filepath.Join(mid, "d", "xwh"), "trusted.overlay.whiteout", "")
	xattr(filepath.Join(mid, "d"), "trusted.overlay.opaque", "x")
	mk(filepath.Join(mid, "d", "opq", "y"), false)
	xattr(filepath.Join(mid, "d", "opq"), "trusted.overlay.opaque", "y")
	// top: a file over a directory, a directory over a file, OCI-looking
	// names, a whiteout of a whole directory.
	mk(filepath.Join(top, "d", "dirunderfile"), false)
	mk(filepath.Join(top, "d", "fileunderdir", "z"), false)
	mk(filepath.Join(top, "d", ".wh.b"), false)
	if err := unix.Mknod(filepath.Join(top, "d", "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}

	u := union{top, mid, bottom}
	dirs, err := u.dirs("d")
	if err != nil || len(dirs) != 3 {
		t.Fatalf("dirs(d) = %v, %v; want the three layers' d", dirs, err)
	}
	listed, err := list(dirs)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range []string{top, mid, bottom} {
		ents, err := os.ReadDir(filepath.Join(l, "d"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			names[e.Name()] = true
		}
	}
	for name := range names {
		_, st, found, err := u.lookup("d/" + name)
		if err != nil {
			t.Fatalf("lookup d/%s: %v", name, err)
		}
		if inList := slices.Contains(listed, name); found != inList {
			t.Errorf("d/%s: lookup found=%v (mode %o), but list shows it: %v", name, found, st.Mode, inList)
		}
	}
	for _, c := range []struct {
		rel  string
		want bool
	}{{"d/a", false}, {"d/xwh", false}, {"d/gone", false}, {"d/c", true}, {"d/opq/y", true}, {"d/opq/x", false},
		{"d/fileunderdir/z", true}, {"d/dirunderfile", true}} {
		if _, _, found, err := u.lookup(c.rel); err != nil || found != c.want {
			t.Errorf("lookup %s: found %v (%v), want %v", c.rel, found, err, c.want)
		}
	}
}
