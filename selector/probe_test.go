package selector

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// mustWork are the probes that pass on the kernels ovl is tested on
// (6.8+, /dev/fuse 0666), for root and for an ordinary user alike.
var mustWork = []string{ProbeNative, ProbeUserxattr, ProbeTwoLowers, ProbeWhiteout, ProbeOpaque,
	ProbeMknod, ProbeLowerdirPlus, ProbeVolatile, ProbeIndex, ProbeXino, ProbeDevFuse, ProbeFuseMount, ProbeFuseBackend}

func checkProbe(t *testing.T, dir string) *Report {
	t.Helper()
	r, err := Probe(context.Background(), dir)
	if err != nil {
		t.Fatalf("Probe(%s): %v", dir, err)
	}
	for _, p := range r.Probes {
		t.Logf("%-14s %7.2f ms  %s", p.Name, p.Millis, p)
	}
	t.Logf("whole probe: %.1f ms (uid %d, %s on %s)", r.ProbeMillis, r.UID, r.LayerDir, r.LayerFS)
	for _, name := range mustWork {
		if p := r.Get(name); !p.OK {
			t.Errorf("probe %s failed on this kernel (%s): %s", name, r.Kernel, p)
		}
	}
	want := namespaceProbeNames()
	if r.UID != 0 {
		want = append([]string{ProbeUserns}, want...)
	}
	want = append(want, ProbeDevFuse, ProbeFusermount, ProbeFuseOtherUIDs)
	if r.UID != 0 {
		want = append(want, ProbeFuseHost)
	}
	var got []string
	for _, p := range r.Probes {
		got = append(got, p.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("probes run: %q\nwant        %q", got, want)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("probe left %s behind in the layer dir", e.Name())
	}
	return r
}

// TestProbeRemovesStaleScratchDirs: a probe killed half-way leaves its
// scratch dir (maybe with a mount in it); the next probe removes it once
// it is old, and leaves a young one (a concurrent probe's) alone.
func TestProbeRemovesStaleScratchDirs(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	stale, young := filepath.Join(dir, "probe-native-1"), filepath.Join(dir, "probe-native-2")
	for _, d := range []string{stale, young} {
		if err := os.MkdirAll(filepath.Join(d, "m"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CleanupMount(t, filepath.Join(stale, "m"))
	if err := unix.Mount("tmpfs", filepath.Join(stale, "m"), "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * staleAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	removeStale(dir)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale scratch dir still there: %v", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("young scratch dir removed: %v", err)
	}
}

func TestProbeAsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	r := checkProbe(t, t.TempDir())
	for _, name := range []string{ProbeRedirectDir, ProbeMetacopy} {
		if p := r.Get(name); !p.OK {
			t.Errorf("probe %s failed for root on %s: %s", name, r.Kernel, p)
		}
	}
	if p := r.Get(ProbeNative); !strings.Contains(p.Detail, "as root") {
		t.Errorf("native probe detail = %q, want it to say it mounted as root", p.Detail)
	}
}

// TestProbeAsNobody probes as uid 65534: the overlay probes must pass
// through a user namespace with userxattr, where the kernel refuses
// redirect_dir and metacopy.
func TestProbeAsNobody(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t, "OVL_TEST_LAYER_DIR="+testutil.SharedDir(t))
		return
	}
	dir := os.Getenv("OVL_TEST_LAYER_DIR")
	r := checkProbe(t, dir)
	if p := r.Get(ProbeUserns); !p.OK {
		t.Errorf("userns probe failed: %s", p)
	}
	if p := r.Get(ProbeNative); !strings.Contains(p.Detail, "user namespace") || !strings.Contains(p.Detail, "userxattr") {
		t.Errorf("native probe detail = %q, want it to say user namespace and userxattr", p.Detail)
	}
	for _, name := range []string{ProbeRedirectDir, ProbeMetacopy} {
		if p := r.Get(name); p.OK {
			t.Errorf("probe %s passed for an ordinary user, but userxattr turns it off in the kernel", name)
		}
	}
}
