package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// vaggaAlias makes the vagga symlink to the test binary with `ovl
// install-vagga-alias` and returns it.
func vaggaAlias(t *testing.T, bin string) string {
	t.Helper()
	dir := testutil.SharedDir(t)
	if out, errOut, code := checkOVL(t, bin, nil, "install-vagga-alias", dir); code != 0 || !strings.Contains(out, filepath.Join(dir, "vagga")+" -> ") {
		t.Fatalf("install-vagga-alias: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := checkOVL(t, bin, nil, "install-vagga-alias", dir); code == 0 {
		t.Error("install-vagga-alias over an existing vagga without --force succeeded")
	}
	return filepath.Join(dir, "vagga")
}

// vaggaIn runs the vagga alias in dir.
func vaggaIn(t *testing.T, vaggaBin, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(vaggaBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run vagga %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ vagga %s  (exit %d)\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return stdout.String(), stderr.String(), code
}

const vaggaTestYAML = `containers:
  app:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Text {/etc/greeting: hello}
    - !Env {BUILD_ONLY: "yes"}
    environ: {MODE: dev}
  nowork:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Remove /work
  ubuntu:
    setup:
    - !Ubuntu noble
commands:
  hi: !Command
    description: Say hi
    container: app
    run: 'echo "$(cat /etc/greeting) $MODE [$BUILD_ONLY] $EXTRA $FROM_HOST $(pwd)"'
  test: !Command
    description: Run tests
    container: app
    aliases: [t]
    group: Testing
    options: |
      Usage: vagga test [options] [<tests>...]
    run: 'echo "tests: $VAGGAOPT_TESTS"'
  args: !Command {container: app, run: [echo]}
  _hidden: !Command {container: app, run: "true"}
  pwd: !Command {container: nowork, run: [/bin/pwd]}
`

// TestVaggaCommandLine runs ovl as vagga through the alias, with the
// command lines of vagga's docs/commandline.rst.
func TestVaggaCommandLine(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	v := vaggaAlias(t, bin)
	dir := buildTestProject(t, vaggaTestYAML)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)

	// Bare vagga lists the commands by group on stderr, exit 127.
	_, errOut, code := vaggaIn(t, v, sub, nil)
	if code != 127 || !strings.Contains(errOut, "Available commands:\n    args\n    hi                  Say hi\n") ||
		!strings.Contains(errOut, "Testing:\n    test                Run tests\n                        (aliases: t)") || strings.Contains(errOut, "_hidden") {
		t.Errorf("bare vagga: exit %d\n%s", code, errOut)
	}
	// A command, from a subdirectory, with -E and -e.
	out, _, code := vaggaIn(t, v, sub, []string{"FROM_HOST=host"}, "-E", "EXTRA=cli", "-e", "FROM_HOST", "hi")
	if code != 0 || !strings.HasSuffix(out, "hello dev [] cli host /work/sub\n") {
		t.Errorf("vagga hi: exit %d, %q", code, out)
	}
	out, _, code = vaggaIn(t, v, dir, nil, "t", "a", "b")
	if code != 0 || out != "tests: a b\n" {
		t.Errorf("vagga t a b: exit %d, %q", code, out)
	}
	if _, errOut, code = vaggaIn(t, v, dir, nil, "test", "--bad"); code != 121 || !strings.Contains(errOut, "Usage: vagga test [options] [<tests>...]") {
		t.Errorf("vagga test --bad: exit %d\n%s", code, errOut)
	}
	if _, _, code = vaggaIn(t, v, dir, nil, "hi", "extra"); code != 122 {
		t.Errorf("vagga hi extra: exit %d, want 122", code)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "args", "-x", "--y"); code != 0 || out != "-x --y\n" {
		t.Errorf("vagga args -x --y: exit %d, %q", code, out)
	}
	if _, errOut, code = vaggaIn(t, v, dir, nil, "nope"); code != 121 || !strings.Contains(errOut, `no such command "nope"`) {
		t.Errorf("vagga nope: exit %d\n%s", code, errOut)
	}
	// A container has /work whatever its steps do.
	if out, _, code = vaggaIn(t, v, sub, nil, "pwd"); code != 0 || out != "/work/sub\n" {
		t.Errorf("vagga pwd in a container that removed /work: exit %d, %q", code, out)
	}
	// _run: the project at /work, the cwd's place, the container's
	// environ, not the build's !Env; read-only unless -W.
	out, _, code = vaggaIn(t, v, sub, nil, "_run", "app", "sh", "-c", `pwd; echo "$MODE [$BUILD_ONLY]"; touch /x 2>/dev/null || echo ro`)
	if code != 0 || out != "/work/sub\ndev []\nro\n" {
		t.Errorf("vagga _run: exit %d, %q", code, out)
	}
	if out, _, code = vaggaIn(t, v, sub, nil, "_run", "-W", "app", "sh", "-c", "touch /x && echo writable"); code != 0 || out != "writable\n" {
		t.Errorf("vagga _run -W: exit %d, %q", code, out)
	}
	// _version_hash, -s, and --no-build.
	full, _, _ := vaggaIn(t, v, dir, nil, "_version_hash", "app")
	short, _, _ := vaggaIn(t, v, dir, nil, "_version_hash", "-s", "app")
	if len(full) != 65 || short != full[:8]+"\n" {
		t.Errorf("_version_hash %q, -s %q", full, short)
	}
	os.WriteFile(filepath.Join(dir, "vagga.yaml"), []byte(strings.Replace(vaggaTestYAML, "greeting: hello", "greeting: changed", 1)), 0o644)
	if _, _, code = vaggaIn(t, v, dir, nil, "--no-build", "hi"); code != 29 {
		t.Errorf("--no-build with a stale container: exit %d, want 29", code)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "--no-version-check", "hi"); code != 0 || !strings.HasPrefix(out, "hello ") {
		t.Errorf("--no-version-check runs the last built root: exit %d, %q", code, out)
	}
	if _, _, code = vaggaIn(t, v, dir, nil, "--containers-only", "hi"); code != 0 {
		t.Errorf("--containers-only: exit %d", code)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "--no-build", "hi"); code != 0 || !strings.HasPrefix(out, "changed ") {
		t.Errorf("after --containers-only: exit %d, %q", code, out)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "-m", "hi", "t"); code != 0 || !strings.HasSuffix(out, "tests: \n") {
		t.Errorf("-m hi t: exit %d, %q", code, out)
	}
	// _build --force runs the steps again; _clean lists and removes.
	if _, errOut, code = vaggaIn(t, v, dir, nil, "_build", "--force", "app"); code != 0 || !strings.Contains(errOut, "[2/3] !Text \"/etc/greeting\" … done") {
		t.Errorf("_build --force: exit %d\n%s", code, errOut)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "_clean", "--old", "-n"); code != 0 || !strings.Contains(out, "Would remove") {
		t.Errorf("_clean --old -n: exit %d, %q (the old root of app)", code, out)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "_clean", "--unused"); code != 0 || !strings.Contains(out, "Removed") {
		t.Errorf("_clean --unused: exit %d, %q", code, out)
	}
	if _, _, code = vaggaIn(t, v, dir, nil, "_clean"); code != 1 {
		t.Errorf("_clean without an action: exit %d, want 1", code)
	}
	for _, what := range []string{"--tmp", "--transient", "--unused-volumes", "--volumes"} {
		if _, _, code = vaggaIn(t, v, dir, nil, "_clean", what, "-n"); code != 0 {
			t.Errorf("_clean %s -n: exit %d", what, code)
		}
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "_clean", "--everything", "-n"); code != 0 || out != fmt.Sprintf("Would remove %q\n", filepath.Join(dir, ".vagga")) {
		t.Errorf("_clean --everything -n: exit %d, %q", code, out)
	}
	if _, _, code = vaggaIn(t, v, dir, nil, "_clean", "--unused", "--at-least", "10days"); code != 1 {
		t.Errorf("_clean --at-least: exit %d, want 1 (refused)", code)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "--isolate-network", "args", "x"); code != 0 || out != "x\n" {
		t.Errorf("--isolate-network: exit %d, %q", code, out)
	}
	if out, _, code = vaggaIn(t, v, dir, nil, "-V"); code != 0 || !strings.HasPrefix(out, "v0.8.1 ") {
		t.Errorf("-V: exit %d, %q", code, out)
	}
	// _list, _base_dir, _relative_work_dir, _check_overlayfs_support.
	if out, _, _ = vaggaIn(t, v, dir, nil, "_list"); out != "args\nhi                  Say hi\npwd\ntest                Run tests\nt                   Run tests\n" {
		t.Errorf("_list: %q", out)
	}
	if out, _, _ = vaggaIn(t, v, dir, nil, "_list", "--containers"); out != "app\nnowork\nubuntu\n" {
		t.Errorf("_list --containers: %q", out)
	}
	if out, _, _ = vaggaIn(t, v, sub, nil, "_base_dir"); out != dir+"\n" {
		t.Errorf("_base_dir: %q", out)
	}
	if out, _, _ = vaggaIn(t, v, sub, nil, "_relative_work_dir"); out != "sub\n" {
		t.Errorf("_relative_work_dir: %q", out)
	}
	if out, _, code = vaggaIn(t, v, t.TempDir(), nil, "_check_overlayfs_support"); code != 0 || out != "supported\n" {
		t.Errorf("_check_overlayfs_support: exit %d, %q", code, out)
	}
	// What ovl does not do: refused, naming it.
	if _, errOut, code = vaggaIn(t, v, dir, nil, "_pack_image", "app"); code != 121 || !strings.Contains(errOut, "_pack_image is not supported by ovl") {
		t.Errorf("_pack_image: exit %d\n%s", code, errOut)
	}
	if _, errOut, code = vaggaIn(t, v, dir, nil, "_build", "ubuntu"); code != 121 || !strings.Contains(errOut, "vagga.yaml:14: step !Ubuntu is not supported by ovl") {
		t.Errorf("_build ubuntu: exit %d\n%s", code, errOut)
	}
	if _, _, code = vaggaIn(t, v, t.TempDir(), nil, "hi"); code != 126 {
		t.Errorf("outside a project: exit %d, want 126", code)
	}
	// ovl's own help shows the one vagga command ovl has too.
	if out, _, _ := checkOVL(t, bin, nil, "--help"); !strings.Contains(out, "_check_overlayfs_support") {
		t.Errorf("ovl --help does not show _check_overlayfs_support:\n%s", out)
	}
}

// TestRunContainerIsVaggaRun: `ovl run CONTAINER` runs as vagga's _run:
// /work bound, the cwd's place, the container's environ and volumes,
// not the build's !Env.
func TestRunContainerIsVaggaRun(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	dir := buildTestProject(t, `containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Env {BUILD_ONLY: "yes"}
    - !EnsureDir /data
    environ: {MODE: dev}
    volumes:
      /data: !Tmpfs {files: {seed: "from the volume"}}
`)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	out, errOut, code := checkOVLIn(t, bin, sub, nil, "run", "c", "--", "sh", "-c", `pwd; echo "$MODE [$BUILD_ONLY]"; cat /data/seed; echo; ls /work`)
	if code != 0 || out != "/work/sub\ndev []\nfrom the volume\nbase.tar.gz\nsub\nvagga.yaml\n" {
		t.Errorf("ovl run c: exit %d, %q\n%s", code, out, errOut)
	}
}
