package native

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestMountRefusesBadSpecs gives Mount each mistake a caller can make and
// checks it is refused with an error naming the path at fault, before
// anything is created or mounted.
func TestMountRefusesBadSpecs(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		// edit breaks the good spec made in root; it may set up mounts
		// (registered for cleanup), which are part of "before".
		edit     func(t *testing.T, root string, s *layer.Spec)
		want     error
		wantPath func(root string, s layer.Spec) string
	}{
		{"missing lower",
			func(t *testing.T, root string, s *layer.Spec) { s.Lowers[1] = filepath.Join(root, "nope") },
			layer.ErrNotDir, func(root string, s layer.Spec) string { return s.Lowers[1] }},
		{"missing upper",
			func(t *testing.T, root string, s *layer.Spec) { s.Upper = filepath.Join(root, "nope") },
			layer.ErrNotDir, func(root string, s layer.Spec) string { return s.Upper }},
		{"missing target",
			func(t *testing.T, root string, s *layer.Spec) { s.Target = filepath.Join(root, "nope") },
			layer.ErrNotDir, func(root string, s layer.Spec) string { return s.Target }},
		{"upper inside a lower",
			func(t *testing.T, root string, s *layer.Spec) {
				s.Upper = mkdirs(t, filepath.Join(s.Lowers[1], "up"))[0]
			},
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Upper }},
		{"lower inside upper",
			func(t *testing.T, root string, s *layer.Spec) {
				s.Lowers[2] = mkdirs(t, filepath.Join(s.Upper, "low"))[0]
			},
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Upper }},
		{"work on another filesystem",
			func(t *testing.T, root string, s *layer.Spec) {
				fs := mkdirs(t, filepath.Join(root, "tmpfs"))[0]
				testutil.CleanupMount(t, fs)
				if err := unix.Mount("tmpfs", fs, "tmpfs", 0, "size=1m"); err != nil {
					t.Fatal(err)
				}
				s.Work = mkdirs(t, filepath.Join(fs, "work"))[0]
			},
			layer.ErrCrossDevice, func(root string, s layer.Spec) string { return s.Work }},
		{"work is upper",
			func(t *testing.T, root string, s *layer.Spec) { s.Work = s.Upper },
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Work }},
		{"work inside upper",
			func(t *testing.T, root string, s *layer.Spec) { s.Work = mkdirs(t, filepath.Join(s.Upper, "w"))[0] },
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Work }},
		{"target inside a lower",
			func(t *testing.T, root string, s *layer.Spec) {
				s.Target = mkdirs(t, filepath.Join(s.Lowers[0], "mnt"))[0]
			},
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Target }},
		{"target inside upper",
			func(t *testing.T, root string, s *layer.Spec) { s.Target = mkdirs(t, filepath.Join(s.Upper, "mnt"))[0] },
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Target }},
		{"upper on an overlay mount",
			func(t *testing.T, root string, s *layer.Spec) {
				inner := threeLayers(t, filepath.Join(root, "inner"))
				testutil.CleanupMount(t, inner.Target)
				if _, err := New().Mount(context.Background(), inner); err != nil {
					t.Fatal(err)
				}
				s.Upper = mkdirs(t, filepath.Join(inner.Target, "up"))[0]
				s.Work = mkdirs(t, filepath.Join(inner.Target, "wk"))[0]
			},
			layer.ErrNestedOverlay, func(root string, s layer.Spec) string { return s.Upper }},
		{"too many layers",
			func(t *testing.T, root string, s *layer.Spec) {
				for i := len(s.Lowers); i <= layer.KernelMaxLayers; i++ {
					s.Lowers = append(s.Lowers, mkdirs(t, filepath.Join(root, "many", strconv.Itoa(i)))[0])
				}
			},
			layer.ErrTooManyLayers, func(root string, s layer.Spec) string { return strconv.Itoa(layer.KernelMaxLayers) }},
		{"lower repeated",
			func(t *testing.T, root string, s *layer.Spec) { s.Lowers[2] = s.Lowers[0] + "/." },
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Lowers[2] }},
		{"lower inside another lower",
			func(t *testing.T, root string, s *layer.Spec) {
				s.Lowers[0] = mkdirs(t, filepath.Join(s.Lowers[2], "sub"))[0]
			},
			layer.ErrOverlap, func(root string, s layer.Spec) string { return s.Lowers[2] }},
		{"one lower without upper",
			func(t *testing.T, root string, s *layer.Spec) { s.Lowers, s.Upper, s.Work = s.Lowers[:1], "", "" },
			layer.ErrIncomplete, func(root string, s layer.Spec) string { return s.Lowers[0] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			spec := threeLayers(t, filepath.Join(root, "stack"))
			tc.edit(t, root, &spec)
			treeBefore, mountsBefore := listTree(t, root), mountsUnder(t, root)

			testutil.CleanupMount(t, spec.Target)
			m, err := New().Mount(context.Background(), spec)
			if err == nil {
				m.Unmount()
				t.Fatalf("Mount(%+v) succeeded, want %v", spec, tc.want)
			}
			t.Logf("refused: %v", err)
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want errors.Is %v", err, tc.want)
			}
			var se *layer.SpecError
			if !errors.As(err, &se) {
				t.Errorf("error %T, want a *layer.SpecError", err)
			}
			if p := tc.wantPath(root, spec); !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name %s", err, p)
			}
			if after := listTree(t, root); !reflect.DeepEqual(after, treeBefore) {
				t.Errorf("refused Mount changed the tree: %d entries before, %d after", len(treeBefore), len(after))
			}
			if after := mountsUnder(t, root); !reflect.DeepEqual(after, mountsBefore) {
				t.Errorf("refused Mount changed the mounts: %v before, %v after", mountsBefore, after)
			}
		})
	}
}

func TestMountRefusesUnavailableOptions(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		edit func(*layer.Spec)
	}{
		{"metacopy with user xattrs", func(s *layer.Spec) { s.Namespace, s.Options.Metacopy = layer.User, true }},
		{"redirect_dir with user xattrs", func(s *layer.Spec) { s.Namespace, s.Options.RedirectDir = layer.User, true }},
		{"volatile without upper", func(s *layer.Spec) { s.Upper, s.Work, s.Options.Volatile = "", "", true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			spec := threeLayers(t, root)
			tc.edit(&spec)
			testutil.CleanupMount(t, spec.Target)
			m, err := New().Mount(context.Background(), spec)
			if err == nil {
				m.Unmount()
				t.Fatal("Mount succeeded, want ErrOption")
			}
			if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), spec.Target) {
				t.Errorf("error %v, want ErrOption naming %s", err, spec.Target)
			}
			if got := mountsUnder(t, root); len(got) != 0 {
				t.Errorf("refused Mount left mounts %v", got)
			}
		})
	}
}

// TestMountOptions mounts with each optional feature on and checks the
// kernel took it (its mount options in mountinfo).
func TestMountOptions(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	spec := threeLayers(t, root)
	spec.Options = layer.Options{Volatile: true, Index: true, RedirectDir: true, Metacopy: true, Xino: true}
	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	opts := superOptions(t, spec.Target)
	// Linux 6.18 shows volatile as fsync=volatile; xino=on is not shown
	// when every layer is on one filesystem, which needs no xino.
	for _, want := range []string{"volatile", "index=on", "redirect_dir=on", "metacopy=on"} {
		has := strings.Contains(","+opts+",", ","+want+",")
		if want == "volatile" {
			has = has || strings.Contains(","+opts+",", ",fsync=volatile,")
		}
		if !has {
			t.Errorf("mount options %q lack %s", opts, want)
		}
	}
}

// superOptions returns the superblock options of the mount at target.
func superOptions(t testing.TB, target string) string {
	t.Helper()
	entries, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := mountinfo.Find(entries, target)
	if !ok {
		t.Fatalf("%s is not in mountinfo", target)
	}
	return e.SuperOptions
}
