package layer_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// walkListing lists the merged tree of stack (a directory of the union)
// under rel by the merge walk alone: List for the names, Lookup for what
// each is, the top copy's content for a file. Lines are "rel type sha".
func walkListing(t *testing.T, stack layer.Dirs, rel string, out *[]string) {
	t.Helper()
	listed, err := layer.List(stack, 0)
	if err != nil {
		t.Fatalf("List %s: %v", rel, err)
	}
	for _, e := range listed {
		p := filepath.Join(rel, e.Name)
		h, err := layer.Lookup(stack, e.Name)
		if err != nil {
			t.Fatalf("Lookup %s: %v", p, err)
		}
		if !h.Kind.Exists() || h.Stat.Mode&unix.S_IFMT != e.Mode || h.Layers[0] != e.Layer {
			t.Errorf("%s: List says type %o from layer %d, Lookup says %v %o from layers %v", p, e.Mode, e.Layer, h.Kind, h.Stat.Mode&unix.S_IFMT, h.Layers)
		}
		line := fmt.Sprintf("%s %o", p, h.Stat.Mode&unix.S_IFMT)
		if h.Kind == layer.HitNonDir && h.Stat.Mode&unix.S_IFMT == unix.S_IFREG {
			top, _ := stack.Dir(h.Layers[0])
			fd, err := unix.Openat(top.Fd, e.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			line += " " + hashFile(t, os.NewFile(uintptr(fd), p))
		}
		*out = append(*out, line)
		if h.Kind == layer.HitDir {
			walkListing(t, h.Dirs, p, out)
		}
		h.Dirs.Close()
	}
}

func hashFile(t *testing.T, f *os.File) string {
	t.Helper()
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)[:8])
}

// mountListing lists the tree at dir as walkListing does.
func mountListing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o", rel, st.Mode&unix.S_IFMT)
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			line += " " + hashFile(t, f)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWalkMatchesKernel walks a stack in every whiteout and opaque form
// the kernel reads (0/0 devices, xattr whiteouts in a directory marked
// "x", opaque directories, files over directories and back) with Lookup
// and List alone, and compares the tree with a kernel overlay mount of
// the same layers.
func TestWalkMatchesKernel(t *testing.T) {
	testutil.RequireRoot(t)
	lowers := kernelLayers(t) // top first
	mid, bottom := lowers[1], lowers[2]
	writeFiles(t, bottom, map[string]string{"xg": "x-gone", "xdir/in": "in", "keepx": "k"})
	writeFiles(t, mid, map[string]string{"xg": "", "xdir": "", "file-over-dir/": ""})
	must(t, unix.Lsetxattr(filepath.Join(mid, "xg"), "trusted.overlay.whiteout", nil, 0))
	must(t, unix.Lsetxattr(filepath.Join(mid, "xdir"), "trusted.overlay.whiteout", nil, 0))
	must(t, unix.Lsetxattr(mid, "trusted.overlay.opaque", []byte("x"), 0))
	writeFiles(t, lowers[0], map[string]string{"file-over-dir": "file"})

	stack := openRoots(t, lowers)
	var got []string
	walkListing(t, stack, "", &got)
	slices.Sort(got)
	want := mountListing(t, kernelMerge(t, lowers))
	slices.Sort(want)
	diffListings(t, "the merge walk", got, want)
	for _, gone := range []string{"xg", "xdir", "c/gone", "d/old", "empty"} {
		h, err := layer.Lookup(stack, filepath.Base(gone))
		if filepath.Dir(gone) == "." && (err != nil || h.Kind.Exists()) {
			t.Errorf("Lookup %s: %v %v, want it gone", gone, h.Kind, err)
		}
		h.Dirs.Close()
	}
}

// TestLookupSkipsLayersAStackRulesOut checks that Lookup asks a layer
// nothing when the stack says it cannot hold the name (fusefs's index of
// immutable lowers), and that a whiteout there would then not count.
func TestLookupSkipsLayersAStackRulesOut(t *testing.T) {
	testutil.RequireRoot(t)
	lowers := kernelLayers(t)
	stack := openRoots(t, lowers)
	h, err := layer.Lookup(skipping{stack, 0}, "empty") // layer 0 holds the whiteout of "empty"
	if err != nil {
		t.Fatal(err)
	}
	defer h.Dirs.Close()
	if h.Kind != layer.HitDir || !slices.Equal(h.Layers, []int{2}) {
		t.Errorf("Lookup of empty skipping layer 0: %v in %v, want the directory of layer 2", h.Kind, h.Layers)
	}
}

// openRoots opens the roots of layers as a Stack, closed when the test
// ends.
func openRoots(t *testing.T, layers []string) layer.Dirs {
	t.Helper()
	roots, err := layer.Roots(layers)
	if err != nil {
		t.Fatal(err)
	}
	stack, err := layer.OpenDirs(roots)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	return stack
}

// skipping is a Stack that rules layer skip out for every name.
type skipping struct {
	layer.Dirs
	skip int
}

func (s skipping) MayHold(i int, name string) bool { return i != s.skip }
