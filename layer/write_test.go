package layer_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// writeDeletions writes into the empty layer dir what deleting base's
// "gone" and "sub/x", recreating "dir" empty and adding "new" leaves, with
// w. base holds gone, keep, sub/x, sub/y and dir/z.
func writeDeletions(t *testing.T, w layer.Writer, dir string) {
	t.Helper()
	writeFiles(t, dir, map[string]string{"new": "new", "sub/": "", "dir/": ""})
	must(t, w.Whiteout(woOpenDir(t, dir), "gone"))
	must(t, w.Whiteout(woOpenDir(t, filepath.Join(dir, "sub")), "x"))
	must(t, w.Opaque(woOpenDir(t, filepath.Join(dir, "dir"))))
}

// TestXattrWhiteoutsMountUnderKernel writes the same changes as 0/0
// devices and as xattr whiteouts (what a layer gets where a device cannot
// be kept), in each namespace, and mounts each layer with kernel overlay
// over the same base: the trees must be the same, and what Flatten and
// the merge walk make of the layers too.
func TestXattrWhiteoutsMountUnderKernel(t *testing.T) {
	testutil.RequireRoot(t)
	for _, ns := range []layer.Namespace{layer.Trusted, layer.User} {
		t.Run(ns.String(), func(t *testing.T) {
			root := t.TempDir()
			base := filepath.Join(root, "base")
			writeFiles(t, base, map[string]string{"gone": "g", "keep": "k", "sub/x": "x", "sub/y": "y", "dir/z": "z"})
			trees := map[layer.Whiteouts][]string{}
			for i, style := range []layer.Whiteouts{layer.DeviceWhiteouts, layer.XattrWhiteouts} {
				name := []string{"dev", "xattr"}[i]
				l := filepath.Join(root, name)
				writeDeletions(t, layer.Writer{NS: ns, Whiteouts: style}, l)
				mnt := filepath.Join(root, "m-"+name)
				must(t, os.Mkdir(mnt, 0o755))
				testutil.CleanupMount(t, mnt)
				opts := layer.MountOptions{Lowers: []string{l, base}, UserXattr: ns == layer.User}.String()
				must(t, unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts))
				trees[style] = testutil.Names(t, mnt)
				for _, d := range []string{"sub", "dir"} {
					for _, n := range testutil.Names(t, filepath.Join(mnt, d)) {
						trees[style] = append(trees[style], d+"/"+n)
					}
				}
				flat := filepath.Join(root, "flat-"+name)
				must(t, layer.Flatten(context.Background(), []string{l, base}, flat))
				if got := testutil.TreeListing(t, flat); !slices.Equal(got, testutil.TreeListing(t, mnt)) {
					t.Errorf("%v: Flatten gave %q, kernel overlay shows %q", style, got, testutil.TreeListing(t, mnt))
				}
				if style == layer.XattrWhiteouts {
					var st unix.Stat_t
					must(t, unix.Lstat(filepath.Join(l, "gone"), &st))
					if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
						t.Errorf("xattr whiteout gone: mode %o size %d, want an empty file", st.Mode, st.Size)
					}
					v := make([]byte, 4)
					n, err := unix.Lgetxattr(filepath.Join(l, "sub"), ns.Xattr(layer.KeyOpaque), v)
					if err != nil || string(v[:n]) != "x" {
						t.Errorf("sub: %s = %q (%v), want x", ns.Xattr(layer.KeyOpaque), v[:max(n, 0)], err)
					}
				}
			}
			want := []string{"dir", "keep", "new", "sub", "sub/y"}
			for style, got := range trees {
				if !slices.Equal(got, want) {
					t.Errorf("kernel overlay of the layer with %v shows %v, want %v", style, got, want)
				}
			}
		})
	}
}

// TestWhiteoutsOnAnOverlayMount writes into a directory on a kernel
// overlay mount (a container's root): ProbeWhiteouts says xattr
// whiteouts and why, MakeWhiteout and Diff write them (stored escaped in
// the outer overlay's upper, read back through it as written), and kernel
// overlay reads that layer through the outer mount.
func TestWhiteoutsOnAnOverlayMount(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	outer := filepath.Join(root, "outer")
	for _, d := range []string{"l0", "l1", "u", "w", "m"} {
		must(t, os.MkdirAll(filepath.Join(outer, d), 0o755))
	}
	testutil.CleanupMount(t, filepath.Join(outer, "m"))
	must(t, unix.Mount("overlay", filepath.Join(outer, "m"), "overlay", 0, layer.MountOptions{
		Lowers: []string{filepath.Join(outer, "l0"), filepath.Join(outer, "l1")}, Upper: filepath.Join(outer, "u"), Work: filepath.Join(outer, "w")}.String()))
	onOvl := filepath.Join(outer, "m", "layer")
	must(t, os.Mkdir(onOvl, 0o755))

	style, why, err := layer.ProbeWhiteouts(woOpenDir(t, onOvl))
	if err != nil || style != layer.XattrWhiteouts || !strings.Contains(why, "overlay mount") {
		t.Errorf("ProbeWhiteouts on an overlay mount: %v, %q, %v; want xattr whiteouts because of the overlay mount", style, why, err)
	}
	if style, why, err := layer.ProbeWhiteouts(woOpenDir(t, root)); err != nil || style != layer.DeviceWhiteouts || why != "" {
		t.Errorf("ProbeWhiteouts on %s: %v, %q, %v; want 0/0 devices", root, style, why, err)
	}

	base := filepath.Join(root, "base")
	writeFiles(t, base, map[string]string{"gone": "g", "keep": "k", "sub/x": "x", "sub/y": "y"})
	tree := filepath.Join(root, "tree")
	must(t, layer.Flatten(context.Background(), []string{base}, tree))
	must(t, os.Remove(filepath.Join(tree, "gone")))
	must(t, os.Remove(filepath.Join(tree, "sub", "x")))
	must(t, layer.Diff(layer.Trusted, []string{base}, tree, onOvl))
	for _, p := range []string{"gone", "sub/x"} {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(onOvl, p), &st))
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("Diff on an overlay mount wrote %s as mode %o, want an xattr whiteout", p, st.Mode)
		}
		// The outer overlay keeps the xattr escaped in its own upper.
		if _, err := unix.Lgetxattr(filepath.Join(outer, "u", "layer", p), "trusted.overlay.overlay.whiteout", nil); err != nil {
			t.Errorf("outer upper: %s has no trusted.overlay.overlay.whiteout: %v", p, err)
		}
	}
	mnt := filepath.Join(root, "view")
	must(t, os.Mkdir(mnt, 0o755))
	testutil.CleanupMount(t, mnt)
	must(t, unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, layer.MountOptions{Lowers: []string{onOvl, base}}.String()))
	diffListings(t, "kernel overlay of the diffed layer", testutil.TreeListing(t, mnt), testutil.TreeListing(t, tree))

	// A directory made opaque drops the xattr whiteouts it held.
	must(t, layer.MakeOpaque(woOpenDir(t, filepath.Join(onOvl, "sub")), layer.Trusted))
	if names := testutil.Names(t, filepath.Join(onOvl, "sub")); len(names) != 0 {
		t.Errorf("an opaque directory still holds %v", names)
	}
}

// TestSharedWhiteout checks that a Writer with a SharedWhiteout makes
// whiteouts that read back as whiteouts and share one inode, that a name
// already taken is an error naming it, and that a directory on another
// filesystem, where no link can reach, still gets its whiteout.
func TestSharedWhiteout(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	for _, d := range []string{work, filepath.Join(dir, "a"), filepath.Join(dir, "b")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wfd := woOpenDir(t, work)
	w := layer.Writer{Shared: layer.NewSharedWhiteout(wfd, "whiteout")}
	for _, p := range []string{"a/x", "a/y", "b/z"} {
		pfd := woOpenDir(t, filepath.Join(dir, filepath.Dir(p)))
		if err := w.Whiteout(pfd, filepath.Base(p)); err != nil {
			t.Fatalf("whiteout %s: %v", p, err)
		}
	}
	var first uint64
	for _, p := range []string{"a/x", "a/y", "b/z"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatal(err)
		}
		if !layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
			t.Errorf("%s: mode %#o rdev %d, want a 0/0 character device", p, st.Mode, st.Rdev)
		}
		if first == 0 {
			first = st.Ino
		} else if st.Ino != first {
			t.Errorf("%s: inode %d, want %d: the whiteouts share one device", p, st.Ino, first)
		}
		if st.Nlink != 4 {
			t.Errorf("%s: %d links, want 4 (three whiteouts and the shared device)", p, st.Nlink)
		}
	}
	if err := w.Whiteout(woOpenDir(t, filepath.Join(dir, "a")), "x"); err == nil || !strings.Contains(err.Error(), "x") {
		t.Errorf("a whiteout over an existing name: %v, want an error naming it", err)
	}
	// The device removed behind the writer's back: a new one is made.
	if err := os.Remove(filepath.Join(work, "whiteout")); err != nil {
		t.Fatal(err)
	}
	if err := w.Whiteout(woOpenDir(t, filepath.Join(dir, "b")), "after"); err != nil {
		t.Fatalf("whiteout after the shared device was removed: %v", err)
	}
	var after unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "b", "after"), &after); err != nil || !layer.IsWhiteoutDevice(after.Mode, after.Rdev) || after.Nlink != 2 {
		t.Errorf("whiteout after the shared device was removed: %v, mode %#o, %d links: want a 0/0 device linked to a new shared one", err, after.Mode, after.Nlink)
	}
	// /dev/shm is a tmpfs: a link to the work dir's device cannot reach it.
	other, err := os.MkdirTemp("/dev/shm", "ovl-shared-whiteout-")
	if err != nil {
		t.Skipf("no /dev/shm to stand for another filesystem: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	if err := w.Whiteout(woOpenDir(t, other), "w"); err != nil {
		t.Fatalf("whiteout on another filesystem: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(other, "w"), &st); err != nil || !layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
		t.Errorf("whiteout on another filesystem: %v, mode %#o: want a 0/0 device", err, st.Mode)
	}
}
