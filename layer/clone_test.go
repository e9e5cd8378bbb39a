package layer_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// childLayer writes a layer that changes the tree of kernelLayers in
// every way a child container can: it deletes a file, replaces a
// directory by a file, changes only the mode and an xattr of a file (a
// layer holds that as a whole copy), appends to a file, rewrites one name
// of a hard-linked pair, chmods a fifo, retargets a symlink and empties
// a directory (opaque).
func childLayer(t *testing.T) string {
	t.Helper()
	l := filepath.Join(t.TempDir(), "child")
	writeFiles(t, l, map[string]string{
		"e": "now a file", "a/file1": "uno", "b/keep": "keep and more", "h1": "changed",
		"s": "-> top", "a/sub/only": "only",
	})
	must(t, unix.Mknod(filepath.Join(l, "top"), unix.S_IFCHR, 0))
	must(t, os.Chmod(filepath.Join(l, "a/file1"), 0o600))
	must(t, unix.Lsetxattr(filepath.Join(l, "a/file1"), "user.test", []byte("w"), 0))
	must(t, os.Chown(filepath.Join(l, "b/keep"), 1234, 5678))
	must(t, unix.Mkfifo(filepath.Join(l, "fifo"), 0o600))
	must(t, unix.Setxattr(filepath.Join(l, "a/sub"), "trusted.overlay.opaque", []byte("y"), 0))
	return l
}

// TestCloneThenFlattenLeavesSourceAlone makes a child's root the fast way
// (CloneTree of the parent's root, then Flatten of the child's layer onto
// it) and checks that it equals the full flatten, that the parent's root
// is unchanged to the last mtime and xattr (nothing was written through
// a hard link), and that a file the child did not change is shared.
func TestCloneThenFlattenLeavesSourceAlone(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	parentLayers := kernelLayers(t)
	child := childLayer(t)
	base := t.TempDir()
	parent := filepath.Join(base, "parent")
	must(t, layer.Flatten(ctx, parentLayers, parent))
	want := filepath.Join(base, "want")
	must(t, layer.Flatten(ctx, append([]string{child}, parentLayers...), want))
	before := testutil.FullTreeListing(t, parent)

	got := filepath.Join(base, "got")
	stats, err := layer.CloneTree(ctx, parent, got)
	must(t, err)
	if stats.Linked == 0 || stats.Copied != 0 {
		t.Errorf("CloneTree as root: %+v, want every regular file linked", stats)
	}
	must(t, layer.Flatten(ctx, []string{child}, got))

	diffTrees(t, "clone + child layer", testutil.FullTreeListing(t, got), "full flatten", testutil.FullTreeListing(t, want))
	diffTrees(t, "parent root after", testutil.FullTreeListing(t, parent), "before", before)
	for _, p := range []string{"d/new", "h2"} {
		a, b := statIno(t, filepath.Join(parent, p)), statIno(t, filepath.Join(got, p))
		if a != b {
			t.Errorf("%s: unchanged by the child but not shared with the parent's root (inode %d vs %d)", p, a, b)
		}
	}
	for _, p := range []string{"a/file1", "b/keep", "h1"} {
		if statIno(t, filepath.Join(parent, p)) == statIno(t, filepath.Join(got, p)) {
			t.Errorf("%s: changed by the child but still the parent's inode", p)
		}
	}
}

func diffTrees(t *testing.T, gotName string, got []string, wantName string, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s differs from %s:", gotName, wantName)
	for _, l := range got {
		if !slices.Contains(want, l) {
			t.Errorf("  only in %s: %s", gotName, l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("  only in %s: %s", wantName, l)
		}
	}
}

func statIno(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st.Ino
}

// TestCloneTreeCrossDevice: a clone onto another filesystem is refused
// with EXDEV before anything is made, so the caller flattens instead.
func TestCloneTreeCrossDevice(t *testing.T) {
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"f": "x"})
	other := "/dev/shm"
	var a, b unix.Stat_t
	if unix.Stat(src, &a) != nil || unix.Stat(other, &b) != nil || a.Dev == b.Dev {
		t.Skipf("needs %s on another filesystem than %s", other, src)
	}
	dstDir, err := os.MkdirTemp(other, "clone-test-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dstDir) })
	dst := filepath.Join(dstDir, "clone")
	_, err = layer.CloneTree(context.Background(), src, dst)
	if !errors.Is(err, unix.EXDEV) {
		t.Fatalf("CloneTree across filesystems: %v, want EXDEV", err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CloneTree across filesystems left %s behind (%v)", dst, err)
	}
}

const envCloneSrc = "OVL_TEST_CLONE_SRC"

// An ordinary user may not link a file they do not own and cannot write
// (fs.protected_hardlinks): CloneTree copies that one and links the rest.
func TestCloneTreeCopiesWhatItMayNotLink(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RequireRoot(t)
		if b, err := os.ReadFile("/proc/sys/fs/protected_hardlinks"); err != nil || string(b) != "1\n" {
			t.Skipf("needs fs.protected_hardlinks = 1 (%q, %v)", b, err)
		}
		shared := testutil.SharedDir(t)
		src := filepath.Join(shared, "src")
		writeFiles(t, src, map[string]string{"theirs": "root's", "mine": "nobody's"})
		must(t, os.Chown(src, 65534, 65534))
		must(t, os.Chown(filepath.Join(src, "mine"), 65534, 65534))
		testutil.RunAsNobody(t, envCloneSrc+"="+src)
		return
	}
	src := os.Getenv(envCloneSrc)
	dst := filepath.Join(filepath.Dir(src), "clone")
	stats, err := layer.CloneTree(context.Background(), src, dst)
	must(t, err)
	if stats.Linked != 1 || stats.Copied != 1 {
		t.Errorf("CloneTree as uid 65534: %+v, want 1 linked (mine) and 1 copied (theirs)", stats)
	}
	if statIno(t, filepath.Join(src, "mine")) != statIno(t, filepath.Join(dst, "mine")) {
		t.Error("mine: not linked")
	}
	if statIno(t, filepath.Join(src, "theirs")) == statIno(t, filepath.Join(dst, "theirs")) {
		t.Error("theirs: linked although protected_hardlinks forbids it")
	}
	for _, n := range []string{"mine", "theirs"} {
		a, errA := os.ReadFile(filepath.Join(src, n))
		b, errB := os.ReadFile(filepath.Join(dst, n))
		if errA != nil || errB != nil || string(a) != string(b) {
			t.Errorf("%s: clone has %q (%v), source %q (%v)", n, b, errB, a, errA)
		}
	}
}
