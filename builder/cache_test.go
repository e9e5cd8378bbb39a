package builder

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// fakeCache is a StepCache in memory: Store remembers each layer's
// directory, Fetch copies it with cp -a (whiteouts, xattrs, times).
type fakeCache struct {
	mu      sync.Mutex
	layers  map[string]string // key -> layer directory
	parents map[string]string // key -> parent key
	order   []string          // keys in the order Store saw them
	fail    error             // Fetch fails with it
	garbage bool              // Fetch writes into dst before failing
}

func newFakeCache() *fakeCache {
	return &fakeCache{layers: map[string]string{}, parents: map[string]string{}}
}

func (f *fakeCache) Fetch(ctx context.Context, key, dst string) (bool, error) {
	f.mu.Lock()
	src, ok := f.layers[key]
	f.mu.Unlock()
	if f.garbage {
		os.WriteFile(filepath.Join(dst, "garbage"), []byte("half a layer"), 0o644)
	}
	if f.fail != nil {
		return false, f.fail
	}
	if !ok {
		return false, nil
	}
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		return false, errors.New(string(out))
	}
	return true, nil
}

func (f *fakeCache) Store(ctx context.Context, key, parent, dir, description string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.layers[key]; !ok {
		f.order = append(f.order, key)
	}
	f.layers[key], f.parents[key] = dir, parent
	return nil
}

const cachedSteps = `
containers:
  base:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Text {/etc/motd: hello}
    - !Remove /etc/group
    - !Env {A: b}
    - !EnsureDir /opt/x
  child:
    setup:
    - !Container base
    - !Text {/opt/x/y: child}
    - !EmptyDir /etc
`

// TestStepCache: a build offers every step's layer with its parent's
// key; a build of the same project in another directory with that cache
// runs no step and gives the same root, to the nanosecond; a cache that
// fails, even after writing half a layer, makes the steps run here with
// a warning and keeps nothing it wrote.
func TestStepCache(t *testing.T) {
	files := map[string]string{}
	first := project(t, cachedSteps, files)
	testutil.BusyboxTar(t, filepath.Join(first, "base.tar.gz"))
	cache := newFakeCache()
	r1, rec1 := mustBuild(t, first, "child", Options{Cache: cache})
	if n := count(rec1, StatusDone); n != 8 || r1.Pulled != 0 {
		t.Fatalf("first build: %d steps ran, %d pulled; want 8 and 0", n, r1.Pulled)
	}
	if len(cache.order) != 8 {
		t.Fatalf("the cache was offered %d layers, want one per step (8)", len(cache.order))
	}
	for i, k := range cache.order {
		want := ""
		if i > 0 {
			want = cache.order[i-1]
		}
		if cache.parents[k] != want {
			t.Errorf("step %d: parent key %q, want the step before's %q", i+1, cache.parents[k], want)
		}
	}

	second := project(t, cachedSteps, files)
	testutil.BusyboxTar(t, filepath.Join(second, "base.tar.gz"))
	r2, rec := mustBuild(t, second, "child", Options{Cache: cache})
	if count(rec, StatusDone) != 0 || count(rec, StatusPulled) != 8 || r2.Ran != 0 || r2.Pulled != 3 {
		t.Errorf("second build: %d steps ran, %d pulled (the child's: %d, %d); want 0, 8 (0, 3)",
			count(rec, StatusDone), count(rec, StatusPulled), r2.Ran, r2.Pulled)
	}
	if a, b := testutil.FullTreeListing(t, r1.Root), testutil.FullTreeListing(t, r2.Root); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("roots differ:\nbuilt:\n%s\npulled:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}

	for name, failing := range map[string]struct {
		fail    error
		garbage bool
	}{
		"unreachable":   {fail: errors.New("registry down")},
		"half a layer":  {fail: errors.New("digest mismatch"), garbage: true},
		"wrote, missed": {garbage: true},
	} {
		t.Run(name, func(t *testing.T) {
			bad := newFakeCache()
			bad.fail, bad.garbage = failing.fail, failing.garbage
			dir := project(t, cachedSteps, files)
			testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
			r, rec := mustBuild(t, dir, "child", Options{Cache: bad})
			if count(rec, StatusDone) != 8 || count(rec, StatusPulled) != 0 {
				t.Errorf("%d steps ran, %d pulled; want 8 and 0", count(rec, StatusDone), count(rec, StatusPulled))
			}
			warnings := 0
			for _, e := range rec.events {
				if e.Status == StatusWarning {
					warnings++
					if !strings.Contains(e.String(), "runs here instead") {
						t.Errorf("warning %q does not say the step runs here", e.String())
					}
				}
			}
			if (bad.fail != nil) != (warnings > 0) {
				t.Errorf("%d warnings for a cache failing with %v", warnings, bad.fail)
			}
			if got := testutil.FullTreeListing(t, r.Root); strings.Contains(strings.Join(got, "\n"), "garbage") {
				t.Error("what the failed fetch wrote is in the root")
			}
			matches, _ := filepath.Glob(filepath.Join(dir, ".vagga/.layers/*/layer/garbage"))
			tmp, _ := os.ReadDir(filepath.Join(dir, ".vagga/.layers/.tmp"))
			if len(matches) > 0 || len(tmp) > 0 {
				t.Errorf("the failed fetch left %v and %d pending layers", matches, len(tmp))
			}
		})
	}
}

// count counts the events of a status.
func count(rec *recorder, s Status) int {
	n := 0
	for _, e := range rec.events {
		if e.Status == s {
			n++
		}
	}
	return n
}

// countingCache is a StepCache that counts its calls and has nothing.
type countingCache struct{ fetches, stores atomic.Int32 }

func (c *countingCache) Fetch(ctx context.Context, key, dst string) (bool, error) {
	c.fetches.Add(1)
	return false, nil
}

func (c *countingCache) Store(ctx context.Context, key, parent, dir, description string) error {
	c.stores.Add(1)
	return nil
}

// TestStepCacheMappedIDs: an ordinary user with subordinate ids, whose
// layers the cache could not pack or unpack with their owners, builds
// without it and is told so once; root uses it for every step.
func TestStepCacheMappedIDs(t *testing.T) {
	testAsRootAndMappedNobody(t, func(t *testing.T) {
		dir := project(t, cachedSteps, nil)
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		cache := &countingCache{}
		_, rec := mustBuild(t, dir, "child", Options{Cache: cache})
		warnings := count(rec, StatusWarning)
		if os.Geteuid() == 0 {
			if cache.fetches.Load() != 8 || cache.stores.Load() != 8 || warnings != 0 {
				t.Errorf("root: %d fetches, %d stores, %d warnings; want 8, 8, 0", cache.fetches.Load(), cache.stores.Load(), warnings)
			}
			return
		}
		if cache.fetches.Load() != 0 || cache.stores.Load() != 0 || warnings != 1 {
			t.Errorf("with subordinate ids: %d fetches, %d stores, %d warnings; want 0, 0 and one warning", cache.fetches.Load(), cache.stores.Load(), warnings)
		}
	})
}
