package native

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestMountFallsBack makes this kernel look older, one missing API at a
// time, and checks Mount picks the next way and still shows the stack.
func TestMountFallsBack(t *testing.T) {
	testutil.RequireRoot(t)
	noFsopen := func(string, int) (int, error) { return -1, unix.ENOSYS }
	for _, tc := range []struct {
		name       string
		layers     int  // awkward extra layers under the three of threeLayers
		fsopen     bool // false: ENOSYS, as before Linux 5.2
		plus       bool // false: lowerdir+ refused, as before Linux 6.8
		wantKeys   []string
		wantTooBig bool
	}{
		{name: "new API", fsopen: true, plus: true, wantKeys: []string{"lowerdir+"}},
		{name: "no lowerdir+", fsopen: true, wantKeys: []string{"lowerdir"}},
		{name: "no lowerdir+, long stack", layers: 8, fsopen: true},
		{name: "no fsopen"},
		{name: "no fsopen, over one page", layers: 60, wantTooBig: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), `a:b,c\d`)
			spec := threeLayers(t, root)
			spec.Lowers = append(spec.Lowers, awkwardLayers(t, root, tc.layers)...)
			var keys []string
			m := kernelMounter
			if !tc.fsopen {
				m.fsopen = noFsopen
			}
			m.setString = func(fd int, key, value string) error {
				if !slices.Contains(keys, key) {
					keys = append(keys, key)
				}
				if key == "lowerdir+" && !tc.plus {
					return unix.EINVAL
				}
				return unix.FsconfigSetString(fd, key, value)
			}
			b := &Backend{m: &m}

			testutil.CleanupMount(t, spec.Target)
			mnt, err := b.Mount(context.Background(), spec)
			if tc.wantTooBig {
				if !errors.Is(err, ErrOptionsTooLong) {
					t.Fatalf("Mount = %v, want ErrOptionsTooLong", err)
				}
				if got := mountsUnder(t, root); len(got) != 0 {
					t.Errorf("refused Mount left mounts %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer mnt.Unmount()
			for _, k := range []string{"lowerdir+", "lowerdir"} {
				if got, want := slices.Contains(keys, k), slices.Contains(tc.wantKeys, k) || (k == "lowerdir+" && tc.fsopen); got != want {
					t.Errorf("fsconfig %q used = %v, want %v (keys %v)", k, got, want, keys)
				}
			}
			opts := superOptions(t, spec.Target)
			if usesPlus := strings.Contains(opts, "lowerdir+="); usesPlus != tc.plus {
				t.Errorf("mount options %q: lowerdir+ = %v, want %v", opts, usesPlus, tc.plus)
			}
			if got := readFile(t, filepath.Join(spec.Target, "a.txt")); got != "top" {
				t.Errorf("a.txt = %q, want %q", got, "top")
			}
			if tc.layers > 0 {
				if got := readFile(t, filepath.Join(spec.Target, "f7")); got != "7" {
					t.Errorf("f7 = %q, want %q", got, "7")
				}
			}
			writeTree(t, spec.Target, map[string]string{"w": "w"})
			if got := readFile(t, filepath.Join(spec.Upper, "w")); got != "w" {
				t.Errorf("upper/w = %q, want the write through the mount", got)
			}
		})
	}
}
