package native

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// awkwardLayers makes n lower layers whose paths are each over 100
// characters and contain ':' and ',' (the kernel's separators in the
// legacy options), top first. Layer i holds "f<i>" and "common" = "<i>".
func awkwardLayers(t testing.TB, root string, n int) []string {
	t.Helper()
	pad := strings.Repeat("p", 80)
	lowers := make([]string, n)
	for i := range lowers {
		lowers[i] = filepath.Join(root, fmt.Sprintf("layer:%03d,with:colons,and,commas-%s", i, pad))
		writeTree(t, lowers[i], map[string]string{"f" + strconv.Itoa(i): strconv.Itoa(i), "common": strconv.Itoa(i)})
		if len(lowers[i]) <= 100 {
			t.Fatalf("layer path %q is not over 100 characters", lowers[i])
		}
	}
	return lowers
}

func TestMount300AwkwardLayers(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	spec := layer.Spec{Lowers: awkwardLayers(t, root, 300), Target: filepath.Join(root, "merged")}
	mkdirs(t, spec.Target)

	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	for _, i := range []int{0, 150, 299} {
		name := "f" + strconv.Itoa(i)
		if got := readFile(t, filepath.Join(spec.Target, name)); got != strconv.Itoa(i) {
			t.Errorf("%s = %q, want %q from layer %d", name, got, strconv.Itoa(i), i)
		}
	}
	if got := readFile(t, filepath.Join(spec.Target, "common")); got != "0" {
		t.Errorf("common = %q, want the top layer's %q", got, "0")
	}
	if n := len(testutil.Names(t, spec.Target)); n != 301 {
		t.Errorf("merged root has %d entries, want 301 (300 f<i> and common)", n)
	}
}

func TestMount501LayersRefused(t *testing.T) {
	root := t.TempDir()
	lowers := make([]string, layer.KernelMaxLayers+1)
	for i := range lowers {
		lowers[i] = filepath.Join(root, strconv.Itoa(i))
	}
	mkdirs(t, lowers...)
	target := filepath.Join(root, "merged")
	mkdirs(t, target)
	_, err := New().Mount(context.Background(), layer.Spec{Lowers: lowers, Target: target})
	if !errors.Is(err, layer.ErrTooManyLayers) {
		t.Fatalf("Mount of 501 layers: %v, want ErrTooManyLayers", err)
	}
	for _, want := range []string{"501", "500"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s (given count and the limit)", err, want)
		}
	}
}

// TestMountLongLayerPath mounts a layer whose path is longer than the 255
// bytes fsconfig takes as a string.
func TestMountLongLayerPath(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	long := root
	for len(long) < 300 {
		long = filepath.Join(long, strings.Repeat("d", 60)+",:")
	}
	spec := layer.Spec{
		Lowers: mkdirs(t, long, filepath.Join(root, "l1")),
		Upper:  filepath.Join(long, "..", "upper"),
		Work:   filepath.Join(long, "..", "work"),
		Target: filepath.Join(root, "merged"),
	}
	mkdirs(t, spec.Upper, spec.Work, spec.Target)
	writeTree(t, long, map[string]string{"deep": "deep"})
	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	if got := readFile(t, filepath.Join(spec.Target, "deep")); got != "deep" {
		t.Errorf("deep = %q, want %q", got, "deep")
	}
}

// TestMountFallbacks mounts through each older path on purpose (this
// kernel has them all) and checks each shows the same tree: one escaped
// lowerdir string through fsconfig, and mount(2) with escaped options.
func TestMountFallbacks(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		mount func(layer.Spec, []option) error
	}{
		{"lowerdir-string", func(s layer.Spec, o []option) error { return kernelMounter.newAPI(s, o, lowerdirString) }},
		{"mount2", kernelMounter.legacy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), `a:b,c\d`)
			spec := threeLayers(t, root)
			opts, err := featureOptions(spec, false)
			if err != nil {
				t.Fatal(err)
			}
			testutil.CleanupMount(t, spec.Target)
			if err := tc.mount(spec, opts); err != nil {
				t.Fatal(err)
			}
			defer backend.Unmount(spec.Target, false)
			if got := readFile(t, filepath.Join(spec.Target, "a.txt")); got != "top" {
				t.Errorf("a.txt = %q, want %q", got, "top")
			}
			if got := testutil.Names(t, filepath.Join(spec.Target, "d")); len(got) != 3 {
				t.Errorf("merged d/ = %v, want x, y, z", got)
			}
			if err := os.Remove(filepath.Join(spec.Target, "gone.txt")); err != nil {
				t.Fatal(err)
			}
			if k := kind(t, spec.Upper, "gone.txt"); k != layer.Whiteout {
				t.Errorf("upper/gone.txt is %v, want a whiteout (upperdir escaped right)", k)
			}
		})
	}
}

// TestMount2OptionsOverOnePage checks mount(2) of a stack whose paths
// pass the page the kernel reads: the options say so (naming the limits),
// and legacy mounts it anyway, its layers named by descriptor, without
// changing the process's working directory.
func TestMount2OptionsOverOnePage(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	spec := layer.Spec{Lowers: awkwardLayers(t, root, 60), Target: filepath.Join(root, "merged")}
	mkdirs(t, spec.Target)
	_, err := legacyData(spec, nil)
	if !errors.Is(err, ErrOptionsTooLong) {
		t.Fatalf("mount(2) options of %d long layers: %v, want ErrOptionsTooLong", len(spec.Lowers), err)
	}
	for _, want := range []string{strconv.Itoa(unix.Getpagesize() - 1), "500"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should name the page (%d) and the kernel's layer limit (500)", err, unix.Getpagesize()-1)
		}
	}
	if strings.Contains(err.Error(), "any number") {
		t.Errorf("error %q: the kernel stacks at most 500 layers", err)
	}
	cwd, _ := os.Getwd()
	testutil.CleanupMount(t, spec.Target)
	if err := kernelMounter.legacy(spec, nil); err != nil {
		t.Fatal(err)
	}
	defer backend.Unmount(spec.Target, false)
	if got := mountMode(superOptions(t, spec.Target)); got != "by fd" {
		t.Errorf("mounted with %s, want by fd", got)
	}
	if got := readFile(t, filepath.Join(spec.Target, "common")); got != "0" {
		t.Errorf("common = %q, want the top layer's", got)
	}
	if got := readFile(t, filepath.Join(spec.Target, "f59")); got != "59" {
		t.Errorf("f59 = %q, want the bottom layer's", got)
	}
	if now, _ := os.Getwd(); now != cwd {
		t.Errorf("working directory %s after the mount, was %s", now, cwd)
	}
}

// TestMountKernelMessage checks that a refusal by the kernel comes back
// with the kernel's own words and the target: here an upper directory on
// a read-only mount, which only the kernel checks.
func TestMountKernelMessage(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	spec := threeLayers(t, root)
	ro := filepath.Join(root, "ro")
	mkdirs(t, ro)
	testutil.CleanupMount(t, ro)
	if err := unix.Mount(root, ro, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	spec.Upper = filepath.Join(ro, "upper")
	spec.Work = filepath.Join(ro, "work")

	testutil.CleanupMount(t, spec.Target)
	_, err := New().Mount(context.Background(), spec)
	var me *MountError
	if !errors.As(err, &me) {
		t.Fatalf("upper on a read-only mount: %v, want a *MountError", err)
	}
	t.Logf("kernel refusal: %v", err)
	if len(me.Kernel) == 0 || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("error %q carries no explanation from the kernel", err)
	}
	if me.Target != spec.Target || !strings.Contains(err.Error(), spec.Target) {
		t.Errorf("error %q does not name the target %s", err, spec.Target)
	}
}

// TestMountKernelLogMessage checks that a refusal the kernel explains only
// in its log (pr_err) still comes back with that explanation: here one
// lower without upper, which Check would have stopped first.
func TestMountKernelLogMessage(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	spec := layer.Spec{Lowers: mkdirs(t, filepath.Join(root, "l0")), Target: filepath.Join(root, "merged")}
	mkdirs(t, spec.Target)
	testutil.CleanupMount(t, spec.Target)
	err := kernelMounter.stack(spec, nil)
	if err == nil {
		t.Fatal("kernel mounted one lower without upper; this test's premise is gone")
	}
	t.Logf("kernel refusal: %v", err)
	if !strings.Contains(err.Error(), "at least 2 lowerdir") || !strings.Contains(err.Error(), spec.Target) {
		t.Errorf("error %q lacks the kernel log's reason or the target", err)
	}
}
