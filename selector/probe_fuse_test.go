package selector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestProbeLayerDirOnOverlay probes with the layer dir on a kernel
// overlay mount, a CI job's container root, as root and as uid 65534:
// ovl's FUSE backend works there (it keeps xattr whiteouts), the mknod
// probe says what refused a 0/0 device, the report says which whiteouts
// layers get, and the choice is fuse (kernel overlay refuses such an
// upper).
func TestProbeLayerDirOnOverlay(t *testing.T) {
	if testutil.InNobodyChild() {
		probeOnOverlay(t, os.Getenv("OVL_TEST_LAYER_DIR"))
		return
	}
	testutil.RequireRoot(t)
	dir := testutil.SharedDir(t)
	o := layer.Spec{Lowers: []string{filepath.Join(dir, "l0"), filepath.Join(dir, "l1")}, Upper: filepath.Join(dir, "u"),
		Work: filepath.Join(dir, "w"), Target: filepath.Join(dir, "root")}
	for _, d := range append(o.Lowers, o.Upper, o.Work, o.Target) {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CleanupMount(t, o.Target)
	if err := unix.Mount("overlay", o.Target, "overlay", 0, layer.MountOptions{Lowers: o.Lowers, Upper: o.Upper, Work: o.Work}.String()); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"root", "nobody"} {
		layerDir := filepath.Join(o.Target, who)
		if err := os.Mkdir(layerDir, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(layerDir, 0o777); err != nil {
			t.Fatal(err)
		}
		t.Run(who, func(t *testing.T) {
			if who == "root" {
				probeOnOverlay(t, layerDir)
				return
			}
			testutil.RunAsNobody(t, "OVL_TEST_LAYER_DIR="+layerDir)
		})
	}
}

func probeOnOverlay(t *testing.T, dir string) {
	r := checkProbeOn(t, dir)
	if r.LayerFS != "overlay" {
		t.Fatalf("layer dir %s is on %s, want overlay", dir, r.LayerFS)
	}
	if p := r.Get(ProbeFuseBackend); !p.OK || !strings.Contains(p.Detail, "xattr") {
		t.Errorf("fuse_backend with the layer dir on overlay: %s; want yes, with xattr whiteouts", p)
	}
	m := r.Get(ProbeMknod)
	if m.OK || m.Error != "" || !strings.Contains(m.Detail, "overlay mount") || strings.Contains(m.Detail, "5.8") {
		t.Errorf("mknod probe on an overlay mount: %s; want a no saying the overlay mount refused it", m)
	}
	if w := r.Whiteouts(); !strings.HasPrefix(w, layer.XattrWhiteouts.String()) {
		t.Errorf("Whiteouts() = %q, want xattr whiteouts", w)
	}
	d, err := Choose(r, Request{})
	if err != nil || d.Backend != backend.FUSE {
		t.Errorf("Choose with the layer dir on overlay = %+v, %v; want fuse", d, err)
	}
}

// checkProbeOn is Probe on dir, leaving nothing behind.
func checkProbeOn(t *testing.T, dir string) *Report {
	t.Helper()
	r, err := Probe(t.Context(), dir)
	if err != nil {
		t.Fatalf("Probe(%s): %v", dir, err)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("probe left %d entries behind in %s", len(left), dir)
	}
	return r
}
