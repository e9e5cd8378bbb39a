package native

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// layerDir opens the layer directory dir, closed when t ends, and reads
// its Opacity with the layer package, as every backend does.
func layerDir(t testing.TB, dir string) (int, layer.Opacity) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	op, err := layer.DirOpacity(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, op
}

// kind classifies name in the layer directory dir with the layer package.
func kind(t testing.TB, dir, name string) layer.Kind {
	t.Helper()
	fd, op := layerDir(t, dir)
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("%s/%s: %v", dir, name, err)
	}
	k, _ := layer.Classify(fd, name, &st, op)
	return k
}

// opacity reads the Opacity of the layer directory dir.
func opacity(t testing.TB, dir string) layer.Opacity {
	t.Helper()
	_, op := layerDir(t, dir)
	return op
}

// checkUpperMarkers checks what the kernel wrote into upper for the
// deletion of gone.txt and the replaced directory sub: a 0/0 character
// device, and sub made opaque with the xattr opaqueXattr
// (trusted.overlay.opaque, or user.overlay.opaque with userxattr); and
// that the layer package reads them as a whiteout and an opaque directory.
func checkUpperMarkers(t testing.TB, upper, opaqueXattr string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "gone.txt"), &st); err != nil {
		t.Fatalf("no whiteout in upper for the deleted file: %v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/gone.txt mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
	if k := kind(t, upper, "gone.txt"); k != layer.Whiteout {
		t.Errorf("layer.Classify(upper/gone.txt) = %v, want whiteout", k)
	}
	v := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(upper, "sub"), opaqueXattr, v)
	if err != nil || string(v[:n]) != "y" {
		t.Errorf("upper/sub %s = %q, %v; want \"y\"", opaqueXattr, v[:max(n, 0)], err)
	}
	if op := opacity(t, filepath.Join(upper, "sub")); op != layer.OpaqueDir {
		t.Errorf("layer.DirOpacity(upper/sub) = %v, want OpaqueDir", op)
	}
}

// threeLayers makes the stack the merge tests share: three lowers, top
// first, an empty upper and work, and a target.
func threeLayers(t testing.TB, root string) layer.Spec {
	t.Helper()
	spec := layer.Spec{
		Lowers: mkdirs(t, filepath.Join(root, "l0"), filepath.Join(root, "l1"), filepath.Join(root, "l2")),
		Upper:  filepath.Join(root, "upper"),
		Work:   filepath.Join(root, "work"),
		Target: filepath.Join(root, "merged"),
	}
	mkdirs(t, spec.Upper, spec.Work, spec.Target)
	writeTree(t, spec.Lowers[0], map[string]string{"a.txt": "top", "d/x": "x from l0"})
	writeTree(t, spec.Lowers[1], map[string]string{"a.txt": "mid", "d/y": "y from l1", "gone.txt": "g", "b.txt": "b", "sub/inner": "i"})
	writeTree(t, spec.Lowers[2], map[string]string{"a.txt": "bottom", "d/z": "z from l2", "sub/deep/f": "f", "c.txt": "c"})
	return spec
}

func TestMountMergesThreeLayersWithUpper(t *testing.T) {
	testutil.RequireRoot(t)
	spec := threeLayers(t, t.TempDir())

	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	mp := spec.Target
	if got := readFile(t, filepath.Join(mp, "a.txt")); got != "top" {
		t.Errorf("a.txt = %q, want the top layer's %q", got, "top")
	}
	if got, want := testutil.Names(t, filepath.Join(mp, "d")), []string{"x", "y", "z"}; !reflect.DeepEqual(got, want) {
		t.Errorf("merged d/ = %v, want %v (directories merge across layers)", got, want)
	}
	if got, want := testutil.Names(t, mp), []string{"a.txt", "b.txt", "c.txt", "d", "gone.txt", "sub"}; !reflect.DeepEqual(got, want) {
		t.Errorf("merged root = %v, want %v", got, want)
	}

	// Writes land in upper; the lowers stay as they were.
	writeTree(t, mp, map[string]string{"new.txt": "new"})
	f, err := os.OpenFile(filepath.Join(mp, "b.txt"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("+more"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Deleting a lower file leaves a whiteout; rmdir + mkdir of a lower
	// directory makes it opaque.
	if err := os.Remove(filepath.Join(mp, "gone.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(mp, "sub")); err != nil {
		t.Fatal(err)
	}
	writeTree(t, mp, map[string]string{"sub/fresh": "fresh"})

	if got := testutil.Names(t, filepath.Join(mp, "sub")); !reflect.DeepEqual(got, []string{"fresh"}) {
		t.Errorf("recreated sub/ = %v, want only [fresh]: the lower sub/ must stay hidden", got)
	}
	if _, err := os.Lstat(filepath.Join(mp, "gone.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deleted gone.txt: lstat = %v, want not found", err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.Names(t, mp); len(got) != 0 {
		t.Errorf("after Unmount the target shows %v, want it empty", got)
	}

	up := spec.Upper
	if got := readFile(t, filepath.Join(up, "new.txt")); got != "new" {
		t.Errorf("upper/new.txt = %q, want %q", got, "new")
	}
	if got := readFile(t, filepath.Join(up, "b.txt")); got != "b+more" {
		t.Errorf("upper/b.txt = %q, want the copied-up %q", got, "b+more")
	}
	if got := readFile(t, filepath.Join(spec.Lowers[1], "b.txt")); got != "b" {
		t.Errorf("lower b.txt = %q after a write through the mount, want it untouched", got)
	}
	checkUpperMarkers(t, up, "trusted.overlay.opaque")
}

func TestMountReadOnlyStack(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	spec := layer.Spec{
		Lowers: mkdirs(t, filepath.Join(root, "l0"), filepath.Join(root, "l1")),
		Target: filepath.Join(root, "merged"),
	}
	mkdirs(t, spec.Target)
	writeTree(t, spec.Lowers[0], map[string]string{"a": "l0"})
	writeTree(t, spec.Lowers[1], map[string]string{"a": "l1", "b": "l1"})
	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	if got := readFile(t, filepath.Join(spec.Target, "a")); got != "l0" {
		t.Errorf("a = %q, want %q", got, "l0")
	}
	err = os.WriteFile(filepath.Join(spec.Target, "c"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a stack without upper: %v, want EROFS", err)
	}
}

func TestMountReadOnlyWithUpper(t *testing.T) {
	testutil.RequireRoot(t)
	spec := threeLayers(t, t.TempDir())
	spec.ReadOnly = true
	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	if err := os.Remove(filepath.Join(spec.Target, "a.txt")); !errors.Is(err, unix.EROFS) {
		t.Errorf("remove in a ReadOnly stack: %v, want EROFS", err)
	}
	if got := testutil.Names(t, spec.Upper); len(got) != 0 {
		t.Errorf("upper of a ReadOnly stack holds %v, want nothing", got)
	}
}

func TestUnmountErrorsNameTarget(t *testing.T) {
	testutil.RequireRoot(t)
	spec := threeLayers(t, t.TempDir())
	if err := backend.Unmount(spec.Target, false); !errors.Is(err, backend.ErrNotMounted) || !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), spec.Target) {
		t.Errorf("Unmount of a plain directory: %v, want EINVAL naming %s", err, spec.Target)
	}

	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(spec.Target, "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Unmount()
	f.Close()
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), spec.Target) {
		t.Errorf("Unmount with an open file: %v, want EBUSY naming %s", err, spec.Target)
	}
	if err := m.Unmount(); err != nil {
		t.Errorf("Unmount after the file was closed: %v", err)
	}
}
