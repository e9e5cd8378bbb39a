package difftest

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExecutorStaysInside runs every kind of operation through symlinks
// that point out of the tree (absolute, and by ".."): nothing outside may
// change, since the test runs as root on the real machine.
func TestExecutorStaysInside(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	tree := filepath.Join(base, "tree")
	for _, d := range []string{outside, tree} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"abs-file": victim,
		"abs-dir":  outside,
		"up-file":  "../outside/victim",
		"up-dir":   "../../" + filepath.Base(base) + "/outside",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(tree, name)); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, outside)
	x, err := NewExecutor(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for _, p := range []string{"abs-file", "up-file", "abs-dir/victim", "up-dir/victim", "abs-dir/new", "up-dir/new"} {
		ops := []Op{
			{Kind: OpCreate, Path: p, Mode: 0o644, Flags: unix.O_TRUNC},
			{Kind: OpWrite, Path: p, Len: 3},
			{Kind: OpAppend, Path: p, Len: 3},
			{Kind: OpTruncate, Path: p},
			{Kind: OpChmod, Path: p, Mode: 0o777},
			{Kind: OpChown, Path: p, UID: 1234, GID: 1234},
			{Kind: OpUtimes, Path: p, Sec: 1},
			{Kind: OpSetxattr, Path: p, Name: "user.x", Value: "1"},
			{Kind: OpMkdir, Path: p + "-d", Mode: 0o755},
			{Kind: OpMknod, Path: p + "-p", Mode: unix.S_IFIFO | 0o644},
			{Kind: OpSymlink, Path: p + "-l", Target: "x"},
			{Kind: OpLink, Path: p, Path2: p + "-h"},
			{Kind: OpRename, Path: p, Path2: p + "-r"},
			{Kind: OpUnlink, Path: p},
		}
		for _, op := range ops {
			x.Run(op)
		}
	}
	if d := Diff(before, snapshot(t, outside), "before", "after"); len(d) > 0 {
		t.Errorf("operations through symlinks changed the outside:\n%q", d)
	}
}
