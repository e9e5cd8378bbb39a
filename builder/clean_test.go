package builder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		dir := fileProject(t)
		first, _ := mustBuild(t, dir, "base", Options{})
		writeProject(t, dir, strings.Replace(fileSteps, "/opt/after: \"written last\"", "/opt/after: edited", 1), nil)
		second, _ := mustBuild(t, dir, "base", Options{})
		store := NewStore(dir)

		// --old: the first root, which .vagga/base no longer points at.
		old, err := store.CleanOld(true)
		if err != nil || len(old) != 1 || old[0].Path != filepath.Dir(first.Root) || old[0].Bytes == 0 {
			t.Fatalf("CleanOld dry run = %+v, %v; want the first root with its size", old, err)
		}
		if _, err := os.Stat(first.Root); err != nil {
			t.Fatalf("dry run removed %s: %v", first.Root, err)
		}
		if _, err := store.CleanOld(false); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(first.Root); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("old root still there: %v", err)
		}
		mustContain(t, filepath.Join(dir, ".vagga", "base"), "opt/after", "edited")

		// --unused-layers: the edited step's old layer and the old finish
		// over it go, the rest stays.
		b := New(load(t, dir), Options{})
		unused, err := b.CleanUnusedLayers(false)
		if err != nil || len(unused) != 2 {
			t.Fatalf("CleanUnusedLayers = %+v, %v; want the layer of the edited step and the finish over it", unused, err)
		}
		r, rec := mustBuild(t, dir, "base", Options{})
		if r.Ran != 0 || r.Root != second.Root {
			t.Errorf("after cleaning unused layers the build ran %d steps: %v", r.Ran, rec.statuses())
		}

		// Clean, as `ovl clean --old --unused-layers --everything -n`:
		// nothing old or unused is left, so the dry run lists .vagga alone
		// and keeps it.
		listed, err := b.Clean(CleanOptions{Old: true, UnusedLayers: true, Everything: true, DryRun: true})
		if err != nil || len(listed) != 1 || listed[0].Path != filepath.Join(dir, ".vagga") {
			t.Fatalf("Clean dry run = %+v, %v; want .vagga alone", listed, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, ".vagga")); err != nil {
			t.Fatalf("Clean dry run removed .vagga: %v", err)
		}

		// --everything, sealed layers included.
		all, err := store.CleanEverything(false)
		if err != nil || len(all) != 1 {
			t.Fatalf("CleanEverything = %+v, %v", all, err)
		}
		if _, err := os.Lstat(filepath.Join(dir, ".vagga")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf(".vagga still there: %v", err)
		}
		if _, err := New(load(t, dir), Options{}).Build(context.Background(), "base"); err != nil {
			t.Errorf("build after clean --everything: %v", err)
		}
	})
}
