package layer_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// specGood makes a valid stack under root: two lowers, upper, work and
// target, all existing directories.
func specGood(t *testing.T, root string) layer.Spec {
	t.Helper()
	s := layer.Spec{
		Lowers: []string{filepath.Join(root, "l0"), filepath.Join(root, "l1")},
		Upper:  filepath.Join(root, "upper"),
		Work:   filepath.Join(root, "work"),
		Target: filepath.Join(root, "target"),
	}
	for _, d := range append([]string{s.Upper, s.Work, s.Target}, s.Lowers...) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func specMkdir(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// specEntries lists every path under root, to show Validate made nothing.
func specEntries(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		fmt.Fprintln(&b, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// upperOnOverlay puts the upper and work directories of s on a kernel
// overlay mount.
func upperOnOverlay(t *testing.T, root string, s *layer.Spec) {
	ovl := specMkdir(t, filepath.Join(root, "ovl"))
	for _, d := range []string{"a", "b", "u", "w"} {
		specMkdir(t, filepath.Join(root, "inner", d))
	}
	in := filepath.Join(root, "inner")
	testutil.CleanupMount(t, ovl)
	opts := layer.MountOptions{Lowers: []string{in + "/a", in + "/b"}, Upper: in + "/u", Work: in + "/w"}.String()
	if err := unix.Mount("overlay", ovl, "overlay", 0, opts); err != nil {
		t.Fatal(err)
	}
	s.Upper, s.Work = specMkdir(t, filepath.Join(ovl, "up")), specMkdir(t, filepath.Join(ovl, "wk"))
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		root      bool // needs root to set up (mounts)
		edit      func(t *testing.T, root string, s *layer.Spec)
		want      error  // nil: valid
		wantField string // SpecError.Field
		wantPath  func(s layer.Spec) string
		// kernel checks with CheckUpperNotOnOverlay too, the kernel's own rule.
		kernel bool
	}{
		{name: "valid", edit: func(t *testing.T, root string, s *layer.Spec) {}},
		{name: "valid read-only stack", edit: func(t *testing.T, root string, s *layer.Spec) { s.Upper, s.Work = "", "" }},
		{name: "valid ID mapping", edit: func(t *testing.T, root string, s *layer.Spec) {
			s.UIDMapping = []layer.IDMapping{{Container: 0, Host: 1, Size: 1000}, {Container: 1000, Host: 0, Size: 1}}
		}},
		{name: "ID mapping overlapping on the host", edit: func(t *testing.T, root string, s *layer.Spec) {
			s.GIDMapping = []layer.IDMapping{{Container: 0, Host: 1, Size: 1000}, {Container: 1000, Host: 5, Size: 1}}
		}, want: layer.ErrOptionValue, wantField: "gidmapping"},
		{name: "empty ID range", edit: func(t *testing.T, root string, s *layer.Spec) {
			s.UIDMapping = []layer.IDMapping{{Container: 0, Host: 1}}
		}, want: layer.ErrOptionValue, wantField: "uidmapping"},
		{name: "no lowers", edit: func(t *testing.T, root string, s *layer.Spec) { s.Lowers = nil },
			want: layer.ErrIncomplete, wantField: "lower"},
		{name: "upper without work", edit: func(t *testing.T, root string, s *layer.Spec) { s.Work = "" },
			want: layer.ErrIncomplete, wantField: "upper/work"},
		{name: "no target", edit: func(t *testing.T, root string, s *layer.Spec) { s.Target = "" },
			want: layer.ErrIncomplete, wantField: "target"},
		{name: "missing lower", edit: func(t *testing.T, root string, s *layer.Spec) { s.Lowers[1] = filepath.Join(root, "none") },
			want: layer.ErrNotDir, wantField: "lower[1]", wantPath: func(s layer.Spec) string { return s.Lowers[1] }},
		{name: "lower is a file",
			edit: func(t *testing.T, root string, s *layer.Spec) {
				s.Lowers[0] = filepath.Join(root, "file")
				if err := os.WriteFile(s.Lowers[0], nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: layer.ErrNotDir, wantField: "lower[0]", wantPath: func(s layer.Spec) string { return s.Lowers[0] }},
		{name: "missing work", edit: func(t *testing.T, root string, s *layer.Spec) { s.Work = filepath.Join(root, "none") },
			want: layer.ErrNotDir, wantField: "work", wantPath: func(s layer.Spec) string { return s.Work }},
		{name: "upper inside a lower",
			edit: func(t *testing.T, root string, s *layer.Spec) {
				s.Upper = specMkdir(t, filepath.Join(s.Lowers[0], "up"))
			},
			want: layer.ErrOverlap, wantField: "upper", wantPath: func(s layer.Spec) string { return s.Lowers[0] }},
		{name: "lower inside upper",
			edit: func(t *testing.T, root string, s *layer.Spec) {
				s.Lowers[1] = specMkdir(t, filepath.Join(s.Upper, "low"))
			},
			want: layer.ErrOverlap, wantField: "upper", wantPath: func(s layer.Spec) string { return s.Lowers[1] }},
		{name: "upper reached through a symlink into a lower",
			edit: func(t *testing.T, root string, s *layer.Spec) {
				specMkdir(t, filepath.Join(s.Lowers[1], "up"))
				link := filepath.Join(root, "link")
				if err := os.Symlink(filepath.Join(s.Lowers[1], "up"), link); err != nil {
					t.Fatal(err)
				}
				s.Upper = link
			},
			want: layer.ErrOverlap, wantField: "upper", wantPath: func(s layer.Spec) string { return s.Upper }},
		{name: "work is upper", edit: func(t *testing.T, root string, s *layer.Spec) { s.Work = s.Upper },
			want: layer.ErrOverlap, wantField: "work", wantPath: func(s layer.Spec) string { return s.Work }},
		{name: "work inside upper",
			edit: func(t *testing.T, root string, s *layer.Spec) { s.Work = specMkdir(t, filepath.Join(s.Upper, "w")) },
			want: layer.ErrOverlap, wantField: "work", wantPath: func(s layer.Spec) string { return s.Work }},
		{name: "target inside a lower",
			edit: func(t *testing.T, root string, s *layer.Spec) {
				s.Target = specMkdir(t, filepath.Join(s.Lowers[1], "t"))
			},
			want: layer.ErrOverlap, wantField: "target", wantPath: func(s layer.Spec) string { return s.Target }},
		{name: "target is upper", edit: func(t *testing.T, root string, s *layer.Spec) { s.Target = s.Upper },
			want: layer.ErrOverlap, wantField: "target", wantPath: func(s layer.Spec) string { return s.Target }},
		{name: "too many layers",
			edit: func(t *testing.T, root string, s *layer.Spec) {
				for i := len(s.Lowers); i <= layer.KernelMaxLayers; i++ {
					s.Lowers = append(s.Lowers, filepath.Join(root, "many", fmt.Sprint(i)))
				}
			},
			want: layer.ErrTooManyLayers, wantField: "lower", wantPath: func(layer.Spec) string { return "the limit is 500" }},
		{name: "work on another filesystem", root: true,
			edit: func(t *testing.T, root string, s *layer.Spec) {
				fs := specMkdir(t, filepath.Join(root, "tmpfs"))
				testutil.CleanupMount(t, fs)
				if err := unix.Mount("tmpfs", fs, "tmpfs", 0, "size=1m"); err != nil {
					t.Fatal(err)
				}
				s.Work = specMkdir(t, filepath.Join(fs, "w"))
			},
			want: layer.ErrCrossDevice, wantField: "work", wantPath: func(s layer.Spec) string { return s.Work }},
		{name: "upper on an overlay mount", root: true, edit: upperOnOverlay,
			want: layer.ErrNestedOverlay, wantField: "upper", wantPath: func(s layer.Spec) string { return s.Upper }, kernel: true},
		// A union of our own takes it (in the kernel's xattr whiteout form).
		{name: "upper on an overlay mount, not for the kernel", root: true, edit: upperOnOverlay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				testutil.RequireRoot(t)
			}
			root := t.TempDir()
			s := specGood(t, root)
			tc.edit(t, root, &s)
			before := specEntries(t, root)
			err := s.Validate(layer.KernelMaxLayers)
			if err == nil && tc.kernel {
				err = s.CheckUpperNotOnOverlay()
			}
			if after := specEntries(t, root); after != before {
				t.Errorf("Validate changed the tree:\n%s\nbecame\n%s", before, after)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate = %v, want errors.Is %v", err, tc.want)
			}
			var se *layer.SpecError
			if !errors.As(err, &se) {
				t.Fatalf("Validate = %T, want *layer.SpecError", err)
			}
			if se.Field != tc.wantField {
				t.Errorf("Field = %q, want %q (error %v)", se.Field, tc.wantField, err)
			}
			if se.Hint == "" {
				t.Errorf("error %v says nothing about what to do", err)
			}
			if tc.wantPath != nil {
				if p := tc.wantPath(s); !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not name %s", err, p)
				}
			}
		})
	}
}

func TestValidateNoLimit(t *testing.T) {
	root := t.TempDir()
	s := specGood(t, root)
	for i := 0; i < layer.KernelMaxLayers+10; i++ {
		s.Lowers = append(s.Lowers, specMkdir(t, filepath.Join(root, "many", fmt.Sprint(i))))
	}
	if err := s.Validate(0); err != nil {
		t.Errorf("Validate(0) of %d layers = %v, want nil: 0 means no limit", len(s.Lowers), err)
	}
}

func TestWritable(t *testing.T) {
	for _, tc := range []struct {
		s    layer.Spec
		want bool
	}{
		{layer.Spec{Upper: "/u", Work: "/w"}, true},
		{layer.Spec{Upper: "/u", Work: "/w", ReadOnly: true}, false},
		{layer.Spec{}, false},
	} {
		if got := tc.s.Writable(); got != tc.want {
			t.Errorf("%+v.Writable() = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestInside(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", false},
		{"/ab", "/a", false},
		{"/a", "/a/b", false},
		{"/x", "/", true},
		{"/", "/", false},
	} {
		if got := layer.Inside(tc.a, tc.b); got != tc.want {
			t.Errorf("Inside(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func ExampleSpecError() {
	err := &layer.SpecError{Field: "work", Path: "/srv/work", Err: layer.ErrCrossDevice,
		Hint: "put the work directory next to the upper directory"}
	fmt.Println(err)
	fmt.Println(errors.Is(err, layer.ErrCrossDevice))
	// Output:
	// work /srv/work: work and upper are on different filesystems (put the work directory next to the upper directory)
	// true
}
