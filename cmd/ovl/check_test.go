package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/selector"
)

// checkOVL runs the ovl binary with args and the extra environment, and
// returns its stdout, stderr and exit status.
func checkOVL(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	return checkOVLIn(t, bin, "", env, args...)
}

// checkOVLIn is checkOVL in the working directory dir ("" for the test's).
// Every test of the binary runs it through here; it logs what ovl printed.
func checkOVLIn(t *testing.T, bin, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	return testutil.RunOVL(t, bin, dir, env, args...)
}

// checkJSONOf runs `ovl check --json` and parses what it prints.
func checkJSONOf(t *testing.T, bin string, env []string, args ...string) map[string]any {
	t.Helper()
	out, _, code := checkOVL(t, bin, env, append([]string{"check", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("ovl check --json exited %d, want 0 (an overlay backend works here)", code)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ovl check --json printed no JSON: %v\n%s", err, out)
	}
	return v
}

// checkProbeOf returns probe name of a parsed `ovl check --json`.
func checkProbeOf(t *testing.T, v map[string]any, name string) map[string]any {
	t.Helper()
	probes, _ := v["probes"].([]any)
	for _, p := range probes {
		if m, _ := p.(map[string]any); m["name"] == name {
			return m
		}
	}
	t.Fatalf("ovl check --json has no probe %q", name)
	return nil
}

// checkNativeWorks runs `ovl check --json` twice as the current user and
// checks that native is chosen, that wantDetail describes how the native
// probe mounted, and that the second answer came from the cache.
func checkNativeWorks(t *testing.T, bin, dir string, wantDetail ...string) {
	env := []string{"OVL_RUNTIME_DIR=" + filepath.Join(dir, "run"), "OVL_BACKEND="}
	layers := filepath.Join(dir, "layers")
	if err := os.MkdirAll(layers, 0o755); err != nil {
		t.Fatal(err)
	}
	first := checkJSONOf(t, bin, env, "--layer-dir", layers)
	if first["backend"] != backend.Native || first["supported"] != true {
		t.Errorf("backend = %v, supported = %v; want native, true (reasons %v)", first["backend"], first["supported"], first["reasons"])
	}
	if first["cached"] != false {
		t.Errorf("first call says cached = %v, want false", first["cached"])
	}
	if int(first["uid"].(float64)) != os.Geteuid() {
		t.Errorf("uid = %v, want %d", first["uid"], os.Geteuid())
	}
	for _, name := range []string{selector.ProbeNative, selector.ProbeUserxattr, selector.ProbeWhiteout, selector.ProbeOpaque, selector.ProbeTwoLowers} {
		if p := checkProbeOf(t, first, name); p["ok"] != true {
			t.Errorf("probe %s: %v, want ok", name, p)
		}
	}
	detail, _ := checkProbeOf(t, first, selector.ProbeNative)["detail"].(string)
	for _, w := range wantDetail {
		if !strings.Contains(detail, w) {
			t.Errorf("native probe detail %q does not say %q", detail, w)
		}
	}
	second := checkJSONOf(t, bin, env, "--layer-dir", layers)
	if second["cached"] != true || second["backend"] != backend.Native {
		t.Errorf("second call: cached = %v, backend = %v; want true, native", second["cached"], second["backend"])
	}
	if third := checkJSONOf(t, bin, env, "--layer-dir", layers, "--refresh"); third["cached"] != false {
		t.Errorf("--refresh: cached = %v, want false", third["cached"])
	}

	out, _, code := checkOVL(t, bin, env, "check", "--layer-dir", layers)
	if code != 0 || !strings.Contains(out, "backend    native") || !strings.Contains(out, "from the cache") {
		t.Errorf("ovl check (text) exit %d, want 0, naming the native backend and the cache", code)
	}
	for _, name := range []string{selector.ProbeNative, selector.ProbeLowerdirPlus, selector.ProbeDevFuse} {
		if !strings.Contains(out, name) {
			t.Errorf("ovl check (text) does not show probe %s", name)
		}
	}
	out, _, code = checkOVL(t, bin, append(env, "OVL_STATE_DIR="+layers), "_check_overlayfs_support")
	if code != 0 || out != "supported\n" {
		t.Errorf("ovl _check_overlayfs_support printed %q, exit %d; want \"supported\", 0", out, code)
	}
}

func TestCheckCLIAsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	checkNativeWorks(t, checkBuildOVL(t), t.TempDir(), "as root")
}

// TestCheckCLIAsNobody runs `ovl check` as uid 65534: native overlay must
// work through a user namespace with userxattr.
func TestCheckCLIAsNobody(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t, "OVL_TEST_BINARY="+checkBuildOVL(t), "OVL_TEST_DIR="+testutil.SharedDir(t))
		return
	}
	checkNativeWorks(t, os.Getenv("OVL_TEST_BINARY"), os.Getenv("OVL_TEST_DIR"), "user namespace", "userxattr")
}

// checkFake is a prober for a machine where nothing but copy works (e.g.
// an old kernel, /dev/fuse closed), or everything works.
func checkFake(works bool) selector.ProbeFunc {
	return func(ctx context.Context, dir string) (*selector.Report, error) {
		r := &selector.Report{Kernel: "4.4.0", UID: 1000, LayerDir: dir, LayerFS: "ext4"}
		for _, n := range []string{selector.ProbeUserns, selector.ProbeNative, selector.ProbeTwoLowers, selector.ProbeWhiteout,
			selector.ProbeOpaque, selector.ProbeDevFuse, selector.ProbeFuseMount, selector.ProbeFuseBackend} {
			p := selector.Result{Name: n, OK: works || n == selector.ProbeUserns}
			if !p.OK {
				p.Error = "refused"
			}
			r.Probes = append(r.Probes, p)
		}
		return r, nil
	}
}

// TestCheckExitStatus: where only the copy backend is left, ovl still
// works, and check exits 0 (its output and --json say copy, and not
// supported); where not even a run can start (no namespace, no chroot)
// it exits 1.
func TestCheckExitStatus(t *testing.T) {
	t.Setenv("OVL_RUNTIME_DIR", t.TempDir())
	t.Setenv("OVL_BACKEND", "")
	var out bytes.Buffer
	if err := checkRun(context.Background(), &checkOptions{JSON: true, LayerDir: t.TempDir(), Prober: checkFake(false)}, &out); err != nil {
		t.Fatalf("checkRun with only copy working returned %v, want exit status 0", err)
	}
	var v checkJSON
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if v.Backend != backend.Copy || v.Supported || len(v.Hints) == 0 || v.Isolation != selector.IsolateUserns {
		t.Errorf("backend %q, supported %v, hints %q, isolation %q; want copy, false, some hints, a user namespace", v.Backend, v.Supported, v.Hints, v.Isolation)
	}

	out.Reset()
	err := checkRun(context.Background(), &checkOptions{LayerDir: t.TempDir(), Prober: checkFake(false)}, &out)
	if err != nil || !strings.Contains(out.String(), "backend    copy") || !strings.Contains(out.String(), "unprivileged overlay needs Linux 5.11") {
		t.Errorf("text check: err %v, output:\n%s\nwant exit 0, the copy backend and the 5.11 hint", err, out.String())
	}

	noRuns := func(ctx context.Context, dir string) (*selector.Report, error) {
		r, err := checkFake(false)(ctx, dir)
		r.Probes[0].OK, r.Probes[0].Error = false, "fork/exec /proc/self/exe: operation not permitted"
		return r, err
	}
	out.Reset()
	err = checkRun(context.Background(), &checkOptions{LayerDir: t.TempDir(), Prober: noRuns}, &out)
	var ex *exitError
	if !errors.As(err, &ex) || ex.code != 1 || !strings.Contains(out.String(), "runs     cannot start here") {
		t.Errorf("check where no run can start: err %v, output:\n%s\nwant exit 1, saying runs cannot start", err, out.String())
	}
}

func TestCheckOverlayfsSupport(t *testing.T) {
	t.Setenv("OVL_STATE_DIR", t.TempDir())
	t.Setenv("OVL_BACKEND", "")
	tests := []struct {
		works    bool
		want     string
		wantCode int
	}{{true, "supported\n", 0}, {false, "unsupported\n", 1}}
	for _, tt := range tests {
		t.Setenv("OVL_RUNTIME_DIR", t.TempDir()) // a fresh cache: each fake answers for itself
		var out bytes.Buffer
		err := checkOverlayfsRun(context.Background(), checkFake(tt.works), &out)
		code := 0
		var ex *exitError
		if errors.As(err, &ex) {
			code = ex.code
		} else if err != nil {
			t.Fatalf("checkOverlayfsRun: %v", err)
		}
		if out.String() != tt.want || code != tt.wantCode {
			t.Errorf("works=%v: printed %q exit %d, want %q exit %d", tt.works, out.String(), code, tt.want, tt.wantCode)
		}
	}
}

func TestCheckShowsForcedBackend(t *testing.T) {
	t.Setenv("OVL_RUNTIME_DIR", t.TempDir())
	t.Setenv("OVL_BACKEND", "native")
	var out bytes.Buffer
	err := checkRun(context.Background(), &checkOptions{JSON: true, LayerDir: t.TempDir(), Prober: checkFake(false)}, &out)
	var ex *exitError
	if !errors.As(err, &ex) || ex.code != 1 {
		t.Fatalf("checkRun: %v, want exit status 1", err)
	}
	var v checkJSON
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Forced == nil || v.Forced.Backend != "native" || !strings.Contains(v.Forced.Error, "backend unavailable") {
		t.Errorf("forced = %+v, want native with an error saying it is unavailable", v.Forced)
	}
	if v.Backend != backend.Copy {
		t.Errorf("backend = %q, want what the selector would pick on its own (copy)", v.Backend)
	}
}
