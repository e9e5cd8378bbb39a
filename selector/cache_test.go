package selector

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/kernelsim"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// countingProber is a fake Probe that counts its calls.
type countingProber struct{ calls int }

func (c *countingProber) probe(ctx context.Context, dir string) (*Report, error) {
	c.calls++
	r := fakeReport(os.Geteuid(), "6.18.0")
	r.LayerDir = dir
	return r, nil
}

func TestCachedProbe(t *testing.T) {
	cacheDir, layerDir, otherLayerDir := t.TempDir(), t.TempDir(), t.TempDir()
	c := &countingProber{}
	get := func(dir string, refresh bool) *Report {
		t.Helper()
		r, err := cachedProbe(context.Background(), cacheDir, dir, refresh, c.probe)
		if err != nil {
			t.Fatalf("cachedProbe: %v", err)
		}
		return r
	}

	first := get(layerDir, false)
	if first.Cached || c.calls != 1 {
		t.Fatalf("first call: cached=%v after %d probes, want a fresh probe", first.Cached, c.calls)
	}
	if _, err := os.Stat(first.CacheFile); err != nil {
		t.Fatalf("cache file not written: %v", err)
	}
	second := get(layerDir, false)
	if !second.Cached || c.calls != 1 {
		t.Fatalf("second call: cached=%v after %d probes, want it served from the cache", second.Cached, c.calls)
	}
	if second.Kernel != first.Kernel || len(second.Probes) != len(first.Probes) || second.CacheFile != first.CacheFile {
		t.Errorf("cached report differs: %+v vs %+v", second, first)
	}
	if r := get(layerDir, true); r.Cached || c.calls != 2 {
		t.Errorf("refresh: cached=%v after %d probes, want a fresh probe", r.Cached, c.calls)
	}
	if r := get(otherLayerDir, false); r.Cached || c.calls != 3 {
		t.Errorf("another layer dir: cached=%v after %d probes, want a fresh probe", r.Cached, c.calls)
	}
	if err := os.WriteFile(first.CacheFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := get(layerDir, false); r.Cached || c.calls != 4 {
		t.Errorf("damaged cache: cached=%v after %d probes, want a fresh probe", r.Cached, c.calls)
	}
	if r := get(layerDir, false); !r.Cached || c.calls != 4 {
		t.Errorf("after rewriting a damaged cache: cached=%v after %d probes, want it served from the cache", r.Cached, c.calls)
	}
}

func TestCachePrunesOldFiles(t *testing.T) {
	cacheDir := t.TempDir()
	old, recent := filepath.Join(cacheDir, "probe-0000000000000001.json"), filepath.Join(cacheDir, "probe-0000000000000002.json")
	for _, f := range []string{old, recent} {
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * cacheMaxAge)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	c := &countingProber{}
	r, err := cachedProbe(context.Background(), cacheDir, t.TempDir(), false, c.probe)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cache file older than %v is still there: %v", cacheMaxAge, err)
	}
	for _, f := range []string{recent, r.CacheFile} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("pruning removed %s: %v", f, err)
		}
	}
}

func TestCacheKeyChanges(t *testing.T) {
	dir := t.TempDir()
	k, err := currentKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	base := k.file(cacheDir)
	for name, change := range map[string]func(*cacheKey){
		"kernel": func(k *cacheKey) { k.KernelRelease += "+1" },
		"build":  func(k *cacheKey) { k.KernelVersion += "#2" },
		"uid":    func(k *cacheKey) { k.EUID++ },
		"fs":     func(k *cacheKey) { k.LayerFS = "nfs" },
		"device": func(k *cacheKey) { k.LayerDev++ },
		"binary": func(k *cacheKey) { k.Binary += "x" },
	} {
		k2 := k
		change(&k2)
		if k2.file(cacheDir) == base {
			t.Errorf("changing the %s does not change the cache file", name)
		}
	}
}

// TestSelectCachedAsRoot selects twice with the real probes: the second
// answer comes from the cache, and both pick native on this machine.
func TestSelectCachedAsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	o := Options{LayerDir: t.TempDir(), CacheDir: t.TempDir(), Backend: "auto"}
	start := time.Now()
	d, err := Select(context.Background(), o)
	fresh := time.Since(start)
	if err != nil {
		t.Fatalf("Select: %v", err)
	}
	start = time.Now()
	r, d2, err := Inspect(context.Background(), o)
	cached := time.Since(start)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	t.Logf("fresh probe + choose: %v; cached: %v", fresh, cached)
	if d.Backend != backend.Native || d2.Backend != backend.Native {
		t.Errorf("chose %s then %s, want native (reasons %q)", d.Backend, d2.Backend, d.Reasons)
	}
	if !r.Cached {
		t.Error("the second call was not served from the cache")
	}
}

// captureWarnings sends slog's output to a buffer for the test's
// duration and returns it.
func captureWarnings(t *testing.T) *bytes.Buffer {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

// TestCacheEnvironmentChanged caches a report, then asks again under a
// simulated kernel that refuses user namespaces (a seccomp filter, as a
// sysctl or a container's profile would): the cached report no longer
// holds, so it is probed again, and a warning says what changed.
func TestCacheEnvironmentChanged(t *testing.T) {
	if _, ok := kernelsim.Active(); ok {
		c := &countingProber{}
		warnings := captureWarnings(t)
		r, err := cachedProbe(t.Context(), os.Getenv("OVL_TEST_CACHE_DIR"), os.Getenv("OVL_TEST_LAYER_DIR"), false, c.probe)
		if err != nil {
			t.Fatal(err)
		}
		if r.Cached || c.calls != 1 {
			t.Errorf("under a new seccomp filter: cached=%v after %d probes, want a fresh probe", r.Cached, c.calls)
		}
		if w := warnings.String(); !strings.Contains(w, "environment changed") || !strings.Contains(w, "seccomp") || !strings.Contains(w, "--refresh") {
			t.Errorf("warning %q: want it to say the environment changed, what (seccomp) and how to probe again", w)
		}
		return
	}
	testutil.RequireRoot(t)
	cacheDir, layerDir := t.TempDir(), t.TempDir()
	c := &countingProber{}
	if _, err := cachedProbe(t.Context(), cacheDir, layerDir, false, c.probe); err != nil {
		t.Fatal(err)
	}
	if r, err := cachedProbe(t.Context(), cacheDir, layerDir, false, c.probe); err != nil || !r.Cached {
		t.Fatalf("second probe: cached=%v, %v; want it from the cache", r != nil && r.Cached, err)
	}
	testutil.RunAsRootWrapped(t, kernelsim.Wrap(kernelsim.NoUserns), "OVL_TEST_CACHE_DIR="+cacheDir, "OVL_TEST_LAYER_DIR="+layerDir)
}

// TestRecheck: a backend chosen from the cache fails at its first step;
// Recheck probes again once, says so, and returns the new decision; a
// decision probed in this process is not probed again.
func TestRecheck(t *testing.T) {
	servedFromCache.Store(false)
	t.Cleanup(func() { servedFromCache.Store(false) })
	o := Options{CacheDir: t.TempDir(), LayerDir: t.TempDir(), Backend: "auto"}
	works := func(failing ...string) ProbeFunc {
		return func(ctx context.Context, dir string) (*Report, error) {
			r := fakeReport(1000, "6.18.0", failing...)
			r.LayerDir = dir
			return r, nil
		}
	}
	o.Prober = works()
	first, err := Select(t.Context(), o)
	if err != nil || first.Backend != backend.Native {
		t.Fatalf("first Select: %v, %v", first.Backend, err)
	}
	if _, changed, _ := Recheck(t.Context(), o, first, errors.New("mount failed")); changed {
		t.Fatal("Recheck of a decision probed in this process probed again")
	}
	cached, err := Select(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	o.Prober = works(append([]string{ProbeUserns}, namespaceProbeNames()...)...) // user namespaces went off, unseen by the cache
	warnings := captureWarnings(t)
	now, changed, err := Recheck(t.Context(), o, cached, errors.New("fork/exec: operation not permitted"))
	if err != nil || !changed || now.Backend != backend.Copy {
		t.Fatalf("Recheck = %s, changed %v, %v; want copy, changed", now.Backend, changed, err)
	}
	if w := warnings.String(); !strings.Contains(w, "native backend, chosen from the probe cache, failed") || !strings.Contains(w, "operation not permitted") {
		t.Errorf("warning %q does not say what failed and that ovl probed again", w)
	}
	if _, changed, _ := Recheck(t.Context(), o, now, errors.New("again")); changed {
		t.Error("Recheck probed twice in one process")
	}
}
