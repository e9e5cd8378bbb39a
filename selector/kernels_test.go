package selector

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/kernelsim"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// kernelWant is what the probe must find under a simulated kernel, for
// root or for an ordinary user: the backend a run gets and the one an
// `ovl mount` in place gets, and probes that must answer no, each with a
// word of its Detail ("" for any).
type kernelWant struct {
	run, host string
	no        map[string]string
	// nsNo: every probe made in a user namespace answers no, with this
	// word.
	nsNo string
}

// kernelWants is the table of TestProbeUnderKernels, by kernel name and
// "root" or "nobody".
var kernelWants = map[string]map[string]kernelWant{
	kernelsim.NoMountAPI.Name: {
		"root":   {run: backend.Native, host: backend.Native, no: map[string]string{ProbeLowerdirPlus: "no new mount API"}},
		"nobody": {run: backend.Native, host: backend.FUSE, no: map[string]string{ProbeLowerdirPlus: "no new mount API"}},
	},
	kernelsim.LegacyParser.Name: {
		"root":   {run: backend.Native, host: backend.Native, no: map[string]string{ProbeLowerdirPlus: "legacy option parser"}},
		"nobody": {run: backend.Native, host: backend.FUSE, no: map[string]string{ProbeLowerdirPlus: "legacy option parser"}},
	},
	kernelsim.FsopenBlocked.Name: {
		"root":   {run: backend.Native, host: backend.Native, no: map[string]string{ProbeLowerdirPlus: "blocks the new mount API"}},
		"nobody": {run: backend.Native, host: backend.FUSE, no: map[string]string{ProbeLowerdirPlus: "blocks the new mount API"}},
	},
	kernelsim.NoUserns.Name: {
		"root": {run: backend.Native, host: backend.Native},
		// Nothing can isolate a run (the runner says so); a mount in
		// place goes through fusermount3.
		"nobody": {run: backend.Copy, host: backend.FUSE, no: map[string]string{ProbeUserns: ""}, nsNo: "user namespace"},
	},
	kernelsim.NoMknod.Name: {
		// Layers here get xattr whiteouts, which this kernel (6.18) reads.
		"root":   {run: backend.Native, host: backend.Native, no: map[string]string{ProbeMknod: "refused"}},
		"nobody": {run: backend.Native, host: backend.FUSE, no: map[string]string{ProbeMknod: "refused"}},
	},
	kernelsim.NoDevFuse.Name: {
		"root":   {run: backend.Native, host: backend.Native, no: map[string]string{ProbeDevFuse: "", ProbeFuseBackend: ""}},
		"nobody": {run: backend.Native, host: backend.Copy, no: map[string]string{ProbeDevFuse: "", ProbeFuseHost: ""}},
	},
}

// TestProbeUnderKernels probes under each simulated kernel
// (internal/kernelsim), as root and as uid 65534, and checks what the
// probes find, which backend a run and an `ovl mount` get, that no answer
// names the probes' scratch dirs, and that nothing is left in the layer
// dir.
func TestProbeUnderKernels(t *testing.T) {
	for _, k := range kernelsim.All() {
		for _, who := range []string{"root", "nobody"} {
			t.Run(k.Name+"/"+who, func(t *testing.T) {
				if active, ok := kernelsim.Active(); ok {
					checkProbeUnder(t, active, who, os.Getenv("OVL_TEST_LAYER_DIR"))
					return
				}
				testutil.RequireRoot(t)
				t.Parallel()
				env := "OVL_TEST_LAYER_DIR=" + testutil.SharedDir(t)
				if who == "nobody" {
					testutil.RunAsNobodyWrapped(t, kernelsim.Wrap(k), env)
				} else {
					testutil.RunAsRootWrapped(t, kernelsim.Wrap(k), env)
				}
			})
		}
	}
}

func checkProbeUnder(t *testing.T, k kernelsim.Kernel, who, dir string) {
	want := kernelWants[k.Name][who]
	r, err := Probe(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Probes {
		t.Logf("%-16s %s", p.Name, p)
		if strings.Contains(p.Error, dir) {
			t.Errorf("probe %s names the probes' scratch dirs, gone by now: %s", p.Name, p.Error)
		}
	}
	if want.nsNo != "" {
		for _, name := range namespaceProbeNames() {
			want.no[name] = want.nsNo
		}
	}
	for name, word := range want.no {
		if p := r.Get(name); p.OK || !strings.Contains(p.String(), word) {
			t.Errorf("probe %s under %s: %s, want no (%s)", name, k.Name, p, word)
		}
	}
	for _, name := range []string{ProbeNative, ProbeTwoLowers, ProbeWhiteout, ProbeOpaque, ProbeLowerdirPlus, ProbeMknod, ProbeDevFuse} {
		if _, no := want.no[name]; !no && !r.Get(name).OK {
			t.Errorf("probe %s under %s: %s, want yes", name, k.Name, r.Get(name))
		}
	}
	for _, req := range []struct {
		what string
		req  Request
		want string
	}{{"a run", Request{}, want.run}, {"ovl mount", Request{HostMount: true}, want.host}} {
		d, err := Choose(r, req.req)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s because %s; hints %q", req.what, d.Backend, strings.Join(d.Reasons, "; "), d.Hints)
		if d.Backend != req.want {
			t.Errorf("%s under %s as %s gets %s, want %s", req.what, k.Name, who, d.Backend, req.want)
		}
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("probe left %s behind in the layer dir", e.Name())
	}
}

// TestNativeProbeNeedsXattrWhiteoutsRead: where mknod of a 0/0 device is
// refused (kernelsim.NoMknod), layers get xattr whiteouts; a kernel that
// does not read them (before 6.7: emulated by a mount that drops the
// overlay.opaque = "x" mark of their directory, without which 6.7+
// lists them, though lookup hides them) must fail the native probe,
// saying why, so that FUSE is picked and a forced native is refused with
// the reason.
func TestNativeProbeNeedsXattrWhiteoutsRead(t *testing.T) {
	if _, ok := kernelsim.Active(); !ok {
		testutil.RequireRoot(t)
		testutil.RunAsRootWrapped(t, kernelsim.Wrap(kernelsim.NoMknod))
		return
	}
	unread := func(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
		for _, l := range spec.Lowers {
			err := unix.Lremovexattr(filepath.Join(l, filepath.Dir(hiddenName)), spec.Namespace.Xattr(layer.KeyOpaque))
			if err != nil && !errors.Is(err, unix.ENODATA) {
				return nil, err
			}
		}
		return native.New().Mount(ctx, spec)
	}
	p := &overlayProber{dir: t.TempDir(), ns: layer.Trusted, mount: unread}
	ok, detail, err := p.supportsNative(t.Context())
	t.Logf("native probe: %v (%s): %v", ok, detail, err)
	if ok || !strings.Contains(detail, "6.7") || !errors.Is(err, errXattrWhiteoutsUnread) {
		t.Fatalf("native probe on a kernel that does not read xattr whiteouts: %v (%s): %v; want no, naming Linux 6.7", ok, detail, err)
	}
	r := fakeReport(0, "6.1.0")
	for i := range r.Probes {
		if r.Probes[i].Name == ProbeNative {
			r.Probes[i] = result(ProbeNative, time.Now(), ok, detail, err)
		}
	}
	if d, err := Choose(r, Request{}); err != nil || d.Backend != backend.FUSE {
		t.Errorf("Choose = %s, %v; want FUSE", d.Backend, err)
	}
	if _, err := Choose(r, Request{Force: backend.Native, ForcedBy: "--backend"}); !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "6.7") {
		t.Errorf("forced native: %v; want it refused, naming Linux 6.7", err)
	}
}
