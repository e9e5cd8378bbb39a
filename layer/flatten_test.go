package layer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// writeFiles creates files under dir: a name ending in "/" is a
// directory, "name -> target" a symlink, otherwise a file with content.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, strings.TrimSuffix(name, "/"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(content, "-> "):
			err = os.Symlink(content[3:], p)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// kernelLayers builds three layers in the kernel's format (0/0 device
// whiteouts, trusted.overlay.opaque) and returns them top first.
func kernelLayers(t *testing.T) []string {
	t.Helper()
	base := t.TempDir()
	l2, l1, l0 := filepath.Join(base, "l2"), filepath.Join(base, "l1"), filepath.Join(base, "l0")
	writeFiles(t, l2, map[string]string{
		"a/file1": "one", "a/sub/deep": "deep", "b/keep": "keep", "c/gone": "gone",
		"d/old/x": "x", "d/old2": "y", "e": "a file", "s": "-> a/file1", "h1": "linked", "empty/": "",
	})
	must(t, os.Link(filepath.Join(l2, "h1"), filepath.Join(l2, "h2")))
	must(t, unix.Mkfifo(filepath.Join(l2, "fifo"), 0o640))
	must(t, unix.Lsetxattr(filepath.Join(l2, "a/file1"), "user.test", []byte("v"), 0))
	must(t, os.Chown(filepath.Join(l2, "b/keep"), 1234, 5678))
	must(t, os.Chmod(filepath.Join(l2, "a/sub"), 0o750))

	writeFiles(t, l1, map[string]string{"a/file1": "uno", "d/new": "new", "e/inside": "in", "c/": ""})
	must(t, unix.Mknod(filepath.Join(l1, "c/gone"), unix.S_IFCHR, 0))
	must(t, unix.Setxattr(filepath.Join(l1, "d"), "trusted.overlay.opaque", []byte("y"), 0))

	writeFiles(t, l0, map[string]string{"top": "top", "a/sub/more": "more"})
	must(t, unix.Mknod(filepath.Join(l0, "empty"), unix.S_IFCHR, 0))
	return []string{l0, l1, l2}
}

// kernelMerge mounts lowers read-only with kernel overlayfs and returns
// the mount point, unmounted when the test ends.
func kernelMerge(t *testing.T, lowers []string) string {
	t.Helper()
	mnt := t.TempDir()
	testutil.CleanupMount(t, mnt)
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
		t.Fatalf("kernel overlay (the oracle) of %v: %v", lowers, err)
	}
	return mnt
}

func diffListings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s differs from the kernel's overlay:", what)
	for _, l := range got {
		if !slices.Contains(want, l) {
			t.Errorf("  only in ours:   %s", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("  only in kernel: %s", l)
		}
	}
}

func TestFlattenMatchesKernelOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	lowers := kernelLayers(t)
	dst := filepath.Join(t.TempDir(), "flat")
	if err := layer.Flatten(context.Background(), lowers, dst); err != nil {
		t.Fatal(err)
	}
	diffListings(t, "Flatten", testutil.TreeListing(t, dst), testutil.TreeListing(t, kernelMerge(t, lowers)))

	var a, b unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dst, "h1"), &a))
	must(t, unix.Lstat(filepath.Join(dst, "h2"), &b))
	if a.Ino != b.Ino {
		t.Errorf("h1 and h2 are hard links in the layer but separate files after Flatten")
	}
	for _, gone := range []string{"c/gone", "d/old", "empty", "e/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(dst, gone)); err == nil {
			t.Errorf("%s should not exist after Flatten", gone)
		}
	}
}

// ociLayers builds a layer in the OCI format over a plain one, top first;
// record says whether the top one records its format.
func ociLayers(t *testing.T, record bool) []string {
	t.Helper()
	base := t.TempDir()
	low, top := filepath.Join(base, "low"), filepath.Join(base, "top")
	writeFiles(t, low, map[string]string{"x/a": "a", "x/b": "b", "y/c": "c", "z": "z"})
	writeFiles(t, top, map[string]string{"x/.wh.a": "", "y/.wh..wh..opq": "", "y/d": "d", ".wh.z": ""})
	if record {
		fd, err := unix.Open(top, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		must(t, err)
		defer unix.Close(fd)
		must(t, layer.RecordFormat(fd, layer.OCIFormat, layer.User))
	}
	return []string{top, low}
}

func treeNames(t *testing.T, dir string) []string {
	var got []string
	for _, l := range testutil.TreeListing(t, dir) {
		got = append(got, strings.Fields(l)[0])
	}
	return got
}

// TestFlattenOCIWhiteouts flattens a layer that records the OCI format:
// its ".wh." entries delete and make opaque, and do not show.
func TestFlattenOCIWhiteouts(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "dst")
	if err := layer.Flatten(context.Background(), ociLayers(t, true), dst); err != nil {
		t.Fatal(err)
	}
	want := []string{".", "x", "x/b", "y", "y/d"}
	if got := treeNames(t, dst); !slices.Equal(got, want) {
		t.Errorf("Flatten with OCI whiteouts gave %v, want %v", got, want)
	}
}

// TestFlattenWhNamesAreNames flattens the same layers without the
// record: in the kernel's format ".wh." names are names, as a kernel
// overlay mount shows them.
func TestFlattenWhNamesAreNames(t *testing.T) {
	testutil.RequireRoot(t)
	lowers := ociLayers(t, false)
	dst := filepath.Join(t.TempDir(), "dst")
	must(t, layer.Flatten(context.Background(), lowers, dst))
	want := []string{".", ".wh.z", "x", "x/.wh.a", "x/a", "x/b", "y", "y/.wh..wh..opq", "y/c", "y/d", "z"}
	if got := treeNames(t, dst); !slices.Equal(got, want) {
		t.Errorf("Flatten of a kernel-format layer with .wh. names gave %v, want %v", got, want)
	}
	diffListings(t, "Flatten", testutil.TreeListing(t, dst), testutil.TreeListing(t, kernelMerge(t, lowers)))
}

func TestFlattenBadLayer(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "dst")
	err := layer.Flatten(context.Background(), []string{"/nonexistent/layer"}, dst)
	var se *layer.SpecError
	if !errors.As(err, &se) || se.Path != "/nonexistent/layer" {
		t.Fatalf("Flatten of a missing layer: got %v, want a SpecError naming the path", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		t.Errorf("Flatten of a missing layer created %s", dst)
	}
}

func TestDiffRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	lowers := kernelLayers(t)
	tree := filepath.Join(t.TempDir(), "tree")
	must(t, layer.Flatten(context.Background(), lowers, tree))
	// Change the tree the ways a build step does.
	must(t, os.RemoveAll(filepath.Join(tree, "a/sub")))                             // delete a dir
	must(t, os.WriteFile(filepath.Join(tree, "a/file1"), []byte("changed"), 0o644)) // overwrite
	must(t, os.Chmod(filepath.Join(tree, "b/keep"), 0o600))                         // metadata only
	must(t, os.RemoveAll(filepath.Join(tree, "e")))                                 // dir -> file
	must(t, os.WriteFile(filepath.Join(tree, "e"), []byte("file again"), 0o644))
	must(t, os.Remove(filepath.Join(tree, "top")))                   // file -> dir
	must(t, os.MkdirAll(filepath.Join(tree, "top/inner"), 0o755))    //
	must(t, os.WriteFile(filepath.Join(tree, "c/gone"), nil, 0o644)) // re-create a whited-out name
	must(t, os.Remove(filepath.Join(tree, "h2")))
	must(t, os.RemoveAll(filepath.Join(tree, "d")))
	must(t, os.MkdirAll(filepath.Join(tree, "d/old"), 0o755)) // dir re-created empty over a hidden one

	upper := filepath.Join(t.TempDir(), "upper")
	if err := layer.Diff(layer.Trusted, lowers, tree, upper); err != nil {
		t.Fatal(err)
	}
	merged := kernelMerge(t, append([]string{upper}, lowers...))
	diffListings(t, "layers + Diff", testutil.TreeListing(t, merged), testutil.TreeListing(t, tree))

	// An unchanged tree gives an empty layer.
	same := filepath.Join(t.TempDir(), "same")
	must(t, layer.Flatten(context.Background(), lowers, same))
	empty := filepath.Join(t.TempDir(), "empty")
	must(t, layer.Diff(layer.Trusted, lowers, same, empty))
	if names, _ := os.ReadDir(empty); len(names) != 0 {
		t.Errorf("Diff of an unchanged tree wrote %d entries, want none", len(names))
	}
}
