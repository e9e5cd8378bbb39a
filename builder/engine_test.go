package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/selector"
)

// The kernel's overlayfs is the oracle for the layers file steps write:
// mounting them must show exactly the flattened root.
func TestFileStepLayersMountAsTheRoot(t *testing.T) {
	testutil.RequireRoot(t)
	dir := fileProject(t)
	r, _ := mustBuild(t, dir, "base", Options{})
	if len(r.Layers) < 5 {
		t.Fatalf("only %d layers: %v", len(r.Layers), r.Layers)
	}
	target := t.TempDir()
	testutil.CleanupMount(t, target)
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(r.Layers, ":")); err != nil {
		t.Fatalf("mount the layers with kernel overlayfs: %v", err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	got, want := treeLines(t, target), treeLines(t, r.Root)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kernel overlay of the layers differs from the flattened root:\nkernel:\n%s\nroot:\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestKeys(t *testing.T) {
	yaml := "containers:\n  c:\n    setup:\n    - !Text {/a: x}\n    - !Copy {source: /work/src, path: /src}\n"
	files := map[string]string{"src/f": "content"}
	keys := func(dir string) []string {
		t.Helper()
		cfg := load(t, dir)
		steps, err := New(cfg, Options{}).plan(cfg.Containers["c"], nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range steps {
			out = append(out, s.key)
		}
		return out
	}
	a, b := project(t, yaml, files), project(t, "# another checkout\n"+yaml, files)
	ka, kb := keys(a), keys(b)
	if !reflect.DeepEqual(ka, kb) {
		t.Fatalf("same config in two directories: keys %v vs %v", ka, kb)
	}
	if ka[0] == ka[1] {
		t.Fatal("two steps share a key")
	}
	// Times and owners of read files do not count; content does.
	os.Chtimes(filepath.Join(b, "src/f"), time0, time0)
	if k := keys(b); !reflect.DeepEqual(k, ka) {
		t.Errorf("touching a read file changed keys: %v", k)
	}
	writeProject(t, b, yaml, map[string]string{"src/f": "changed"})
	if k := keys(b); k[0] != ka[0] || k[1] == ka[1] {
		t.Errorf("changing a read file: keys %v, was %v (want step 1 kept, step 2 changed)", k, ka)
	}
	writeProject(t, b, yaml, map[string]string{"src/new": "x", "src/f": "content"})
	if k := keys(b); k[1] == ka[1] {
		t.Error("adding a file to a copied directory kept the key")
	}
	writeProject(t, a, strings.Replace(yaml, "{/a: x}", "{/a: y}", 1), nil)
	if k := keys(a); k[0] == ka[0] || k[1] == ka[1] {
		t.Errorf("editing step 1 must change every key: %v vs %v", k, ka)
	}
}

func TestEachStepAndSharedGiveTheSameRoot(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		dir := fileProject(t)
		each, _ := mustBuild(t, dir, "base", Options{NoRoot: true})
		other := fileProject(t)
		shared, _ := mustBuild(t, other, "base", Options{OneLayer: true})
		if len(shared.Layers) != 3 {
			t.Errorf("shared build has %d layers, want 3 (the base, the steps', the finish)", len(shared.Layers))
		}
		if each.Key != shared.Key {
			t.Errorf("container key depends on the mode: %s vs %s", each.Key, shared.Key)
		}
		eachRoot, _ := New(load(t, dir), Options{}).Build(context.Background(), "base")
		if a, b := treeHash(t, eachRoot.Root), treeHash(t, shared.Root); a != b {
			t.Errorf("roots differ:\neach step:\n%s\nshared:\n%s", a, b)
		}
	})
}

// Squashing keeps the tree: a build whose stack exceeds the backend's
// limit gives the same root as one without a limit.
func TestSquashKeepsTheTree(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		var b strings.Builder
		b.WriteString("containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n")
		for i := 0; i < 40; i++ {
			fmt.Fprintf(&b, "    - !Text {/etc/f%d: '%d'}\n", i, i)
			if i%7 == 3 {
				fmt.Fprintf(&b, "    - !Remove /etc/f%d\n", i-1)
			}
			if i == 20 {
				b.WriteString("    - !EmptyDir /etc\n")
			}
		}
		dir := project(t, b.String(), nil)
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		limited, rec := mustBuild(t, dir, "c", Options{Decision: selector.Decision{MaxLayers: 8}})
		if len(limited.Layers) > 8 {
			t.Errorf("stack of %d layers for a backend of 8", len(limited.Layers))
		}
		squashes := 0
		for _, e := range rec.events {
			if e.Status == StatusSquash {
				squashes++
			}
		}
		if squashes == 0 {
			t.Error("no squash event")
		}
		other := project(t, b.String(), nil)
		testutil.BusyboxTar(t, filepath.Join(other, "base.tar.gz"))
		full, _ := mustBuild(t, other, "c", Options{})
		if len(full.Layers) <= 8 {
			t.Fatalf("unlimited build has %d layers", len(full.Layers))
		}
		if a, b := treeHash(t, limited.Root), treeHash(t, full.Root); a != b {
			t.Errorf("squashed root differs:\n%s\nvs\n%s", a, b)
		}
		// A rebuild finds the same squash layers.
		again, rec := mustBuild(t, dir, "c", Options{Decision: selector.Decision{MaxLayers: 8}})
		for _, e := range rec.events {
			if e.Status == StatusSquash {
				t.Errorf("rebuild squashed again: %v", e)
			}
		}
		if !reflect.DeepEqual(again.Layers, limited.Layers) {
			t.Errorf("rebuild stack differs")
		}
	})
}

// A child container stacks on its parent's layers: nothing of the parent
// is copied into the child's layers.
func TestChildStacksOnParent(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		yaml := "containers:\n  parent:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !Copy {source: /work/big, path: /big}\n" +
			"  child:\n    setup:\n    - !Container parent\n    - !Text {/etc/child: yes}\n    - !Remove /big/one\n"
		files := map[string]string{}
		for i := 0; i < 50; i++ {
			files[fmt.Sprintf("big/%d", i)] = strings.Repeat("x", 1000)
		}
		files["big/one"] = "1"
		dir := project(t, yaml, files)
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		child, rec := mustBuild(t, dir, "child", Options{})
		parent, _ := mustBuild(t, dir, "parent", Options{})
		if n := len(parent.Layers); !reflect.DeepEqual(child.Layers[len(child.Layers)-n:], parent.Layers) {
			t.Fatalf("child's stack %v does not end with the parent's %v", child.Layers, parent.Layers)
		}
		own := child.Layers[:len(child.Layers)-len(parent.Layers)]
		var size int64
		for _, l := range own {
			filepath.Walk(l, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() {
					size += fi.Size()
				}
				return nil
			})
		}
		if len(own) != 2 || size > 100 {
			t.Errorf("child's own layers: %d layers, %d bytes of files; want 2 small ones", len(own), size)
		}
		mustContain(t, child.Root, "big/7", strings.Repeat("x", 1000))
		mustContain(t, child.Root, "etc/child", "yes")
		if _, err := os.Lstat(filepath.Join(child.Root, "big/one")); err == nil {
			t.Error("child's !Remove did not hide the parent's file")
		}
		mustContain(t, parent.Root, "big/one", "1")
		if st := rec.statuses(); len(st) != 3 {
			t.Errorf("child events %v", st)
		}
	})
}

// Two builds of one container at once: the lock serialises them, both
// succeed with the same result.
func TestParallelBuildsOfOneContainer(t *testing.T) {
	dir := fileProject(t)
	var wg sync.WaitGroup
	results := make([]*Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = New(load(t, dir), Options{OneLayer: i%2 == 0}).Build(context.Background(), "base")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		if results[i].Root != results[0].Root {
			t.Errorf("build %d root %s vs %s", i, results[i].Root, results[0].Root)
		}
	}
	assertNothingHalfMade(t, dir)
}
