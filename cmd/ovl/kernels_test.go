package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/kernelsim"
	"github.com/ovl-dev/ovl/internal/kerneltest"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestKernelsCLI runs ovl under each simulated kernel, as root and as uid
// 65534 (internal/kerneltest): ovl check, a writable run, a Snapshot
// volume and ovl mount of 300 layers with long paths everywhere; a
// 60-step build where mount(2) must take a stack over a page, in a user
// namespace (no new mount API, uid 65534). make test-integration builds
// in every cell, and under kernels that combine two differences.
func TestKernelsCLI(t *testing.T) {
	var bin string
	if _, ok := kernelsim.Active(); !ok {
		bin = checkBuildOVL(t)
	}
	kerneltest.Run(t, bin, kerneltest.Cells(kernelsim.All()...), kerneltest.Options{
		BuildSteps: func(c kerneltest.Cell) int {
			if c.Kernel.Name == kernelsim.NoMountAPI.Name && c.Nobody {
				return 60
			}
			return 0
		},
	})
}

// TestRecheckCLI: the probe cache says native (probed under one kernel:
// no-mknod), then user namespaces go off in a way the cache's environment
// does not show (another seccomp filter, no-userns: one filter either
// way). The next build and run, as uid 65534, fail at their start; ovl
// probes again once, says so, and the run after gets the new backend
// from the cache.
func TestRecheckCLI(t *testing.T) {
	if k, ok := kernelsim.Active(); ok {
		bin, dir := os.Getenv("OVL_TEST_BINARY"), os.Getenv("OVL_TEST_DIR")
		env := []string{"OVL_RUNTIME_DIR=" + filepath.Join(dir, "run"), "OVL_STATE_DIR=" + filepath.Join(dir, "state"), "OVL_BACKEND="}
		root := filepath.Join(dir, "root")
		proj := os.Getenv("OVL_TEST_PROJECT")
		switch k.Name {
		case kernelsim.NoMknod.Name:
			testutil.BusyboxRoot(t, root)
			if out, _, code := checkOVL(t, bin, env, "check", "--json"); code != 0 || !strings.Contains(out, `"backend": "native"`) {
				t.Fatalf("ovl check: exit %d, want native", code)
			}
			if out, _, code := checkOVLIn(t, bin, proj, env, "build", "c"); code != 0 || !strings.Contains(out, "native backend") {
				t.Fatalf("ovl build: exit %d, want it built on native", code)
			}
			// The next build has a step to run.
			if err := os.WriteFile(filepath.Join(proj, "vagga.yaml"), []byte(recheckYAML+"    - !Sh \"true\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		case kernelsim.NoUserns.Name:
			_, errOut, code := checkOVLIn(t, bin, proj, env, "build", "c")
			if code == 0 || !strings.Contains(errOut, "chosen from the probe cache, failed; probed again: copy") ||
				!strings.Contains(errOut, "the next build uses the copy backend") {
				t.Errorf("a build on a stale cache: exit %d, stderr %q; want it failed, and that ovl probed again", code, errOut)
			}
			_, errOut, code = checkOVL(t, bin, env, "run", "--writable", root, "--", "true")
			if code != runExitOwnError || !strings.Contains(errOut, "native backend, chosen from the probe cache, failed; probed again: copy") ||
				!strings.Contains(errOut, "the next run uses the copy backend") {
				t.Errorf("a run on a stale cache: exit %d, stderr %q; want 125, and that ovl probed again", code, errOut)
			}
			_, errOut, _ = checkOVL(t, bin, env, "run", "--writable", root, "--", "true")
			if !strings.Contains(errOut, "(copy backend)") || strings.Contains(errOut, "probed again") {
				t.Errorf("the run after: stderr %q; want the copy backend from the cache, not another probe", errOut)
			}
		}
		return
	}
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	dir := buildTestProject(t, recheckYAML)
	if err := os.Chmod(filepath.Join(dir, "vagga.yaml"), 0o666); err != nil { // uid 65534 adds a step
		t.Fatal(err)
	}
	env := []string{"OVL_TEST_BINARY=" + bin, "OVL_TEST_DIR=" + testutil.SharedDir(t), "OVL_TEST_PROJECT=" + dir}
	testutil.RunAsNobodyWrapped(t, kernelsim.Wrap(kernelsim.NoMknod), env...)
	testutil.RunAsNobodyWrapped(t, kernelsim.Wrap(kernelsim.NoUserns), env...)
}

// recheckYAML is TestRecheckCLI's project: a container of two steps.
const recheckYAML = `containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh "echo built > /etc/two"
`
