// Package testutil holds what ovl's tests share: the root requirement,
// dropping to an unprivileged user, and mounts that are always undone.
package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// NobodyUID and NobodyGID are the unprivileged ids tests drop to.
const (
	NobodyUID = 65534
	NobodyGID = 65534
)

const envNobody = "OVL_TEST_AS_NOBODY"

// RequireRoot skips t when not running as root, with a message saying so.
// In CI (CI=true) mount tests must run, so there it fails instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" && !InNobodyChild() {
		t.Fatal("this test mounts filesystems and needs root; CI runs as root, so something is wrong")
	}
	t.Skip("skipping: this test mounts filesystems and needs root (run `make test` as root)")
}

// InNobodyChild reports whether this test process is the unprivileged
// child started by RunAsNobody.
func InNobodyChild() bool { return os.Getenv(envNobody) == "1" }

// Main runs m, a package's tests (call it from TestMain, after
// reexec.Init), with ovl's own directories in a temporary directory of
// this test process that is removed when the tests end: OVL_RUNTIME_DIR
// (the probe cache, FUSE state) and OVL_STATE_DIR (transient copies),
// unless the caller set them. Processes the tests start (ovl binaries,
// re-exec entries) inherit them, so the tests leave nothing in /run/ovl,
// /var/lib/ovl or /tmp/ovl-UID.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ovl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testutil: a directory for ovl's state:", err)
		return 1
	}
	for _, v := range stateVars {
		if os.Getenv(v.name) == "" {
			os.Setenv(v.name, filepath.Join(dir, v.sub))
		}
	}
	code := m.Run()
	if err := layer.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "testutil: remove %s: %v\n", dir, err)
	}
	return code
}

// stateVars are the variables Main points at its directory.
var stateVars = []struct{ name, sub string }{{"OVL_RUNTIME_DIR", "run"}, {"OVL_STATE_DIR", "state"}}

// RunAsNobody reruns the current test, alone, as uid/gid 65534 with no
// groups (setpriv), from a link to (or a copy of) the test binary in a
// directory of the test that the user can reach, and fails t if it
// fails. The child sees InNobodyChild() == true. extraEnv is added to its
// environment; ovl's directories of this process (see Main) are not
// passed on, the child makes its own. Its output is logged. Needs root.
func RunAsNobody(t *testing.T, extraEnv ...string) {
	t.Helper()
	runAsNobody(t, nil, extraEnv)
}

// RunAsNobodyWrapped is RunAsNobody with the setpriv command run through
// wrap, a command line that ends by executing the arguments that follow
// it (a simulated kernel: kernelsim.Wrap).
func RunAsNobodyWrapped(t *testing.T, wrap []string, extraEnv ...string) {
	t.Helper()
	runAsNobody(t, wrap, extraEnv)
}

// RunAsRootWrapped reruns the current test, alone, as root through wrap
// (as RunAsNobodyWrapped), and fails t if it fails. The child makes its
// own ovl directories (see Main); extraEnv is added to its environment.
// Its output is logged.
func RunAsRootWrapped(t *testing.T, wrap []string, extraEnv ...string) {
	t.Helper()
	RequireRoot(t)
	args := append(append([]string(nil), wrap...), os.Args[0], "-test.run", runPattern(t.Name()), "-test.v", "-test.count=1")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(nobodyEnv(os.Environ()), extraEnv...)
	out, err := cmd.CombinedOutput()
	t.Logf("as root through %s:\n%s", strings.Join(wrap, " "), out)
	if err != nil {
		t.Fatalf("test as root through %s failed: %v", strings.Join(wrap, " "), err)
	}
}

// runAsNobody is RunAsNobody, with the setpriv command run through wrap
// (a command that ends by executing its arguments) when wrap is set.
func runAsNobody(t *testing.T, wrap []string, extraEnv []string) {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv not found (package util-linux): %v", err)
	}
	bin := filepath.Join(SharedDir(t), filepath.Base(os.Args[0]))
	if err := os.Link(os.Args[0], bin); err != nil {
		if err := copyFile(os.Args[0], bin); err != nil {
			t.Fatalf("copy test binary for the unprivileged user: %v", err)
		}
	}
	args := append(append([]string(nil), wrap...), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "-test.run", runPattern(t.Name()), "-test.v", "-test.count=1")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(nobodyEnv(os.Environ()), envNobody+"=1", "HOME=/nonexistent", "XDG_RUNTIME_DIR=", "XDG_STATE_HOME=")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	t.Logf("as uid 65534:\n%s", out)
	if err != nil {
		t.Fatalf("test as uid 65534 failed: %v", err)
	}
}

// nobodyEnv is env without ovl's directories, which belong to root.
func nobodyEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k != stateVars[0].name && k != stateVars[1].name {
			out = append(out, kv)
		}
	}
	return out
}

// runPattern anchors each part of a (sub)test name for -test.run.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// SharedDir returns a fresh temporary directory that uid 65534 can use:
// mode 0777, on the same filesystem as t.TempDir, with every parent
// traversable. It is removed when the test ends.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// CleanupMount makes sure target is unmounted when the test ends, even if
// it failed half-way; an already unmounted target is fine. Register it
// right before mounting.
func CleanupMount(t testing.TB, target string) {
	t.Helper()
	t.Cleanup(func() {
		for i := 0; i < 8; i++ {
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				return // EINVAL: not a mount point any more
			}
		}
	})
}

// StartReady starts cmd, whose command must print the line "ready" on
// stdout once it is set up, and returns when it has. cmd is killed and
// waited for when t ends.
func StartReady(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("%s did not start: %q, %v", cmd.Path, line, err)
	}
}

const envWithout = "OVL_TEST_ROOT_WITHOUT"

// InRootWithoutChild reports whether this test process is the child
// started by RunAsRootWithout.
func InRootWithoutChild() bool { return os.Getenv(envWithout) != "" }

// RunAsRootWithout reruns the current test, alone, as root without the
// capabilities caps (setpriv names: "sys_admin", "sys_chroot"), dropped
// from its bounding set so that its exec does not gain them: root in a
// default Docker or podman container, which lacks CAP_SYS_ADMIN. It
// fails t if the child fails; the child sees InRootWithoutChild() ==
// true, and extraEnv in its environment. Its output is logged.
func RunAsRootWithout(t *testing.T, caps []string, extraEnv ...string) {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv not found (package util-linux): %v", err)
	}
	drop := "-" + strings.Join(caps, ",-")
	cmd := exec.Command("setpriv", "--bounding-set="+drop, "--inh-caps="+drop,
		os.Args[0], "-test.run", runPattern(t.Name()), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envWithout+"="+strings.Join(caps, ","))
	cmd.Env = append(cmd.Env, extraEnv...)
	out, err := cmd.CombinedOutput()
	t.Logf("as root without %s:\n%s", strings.Join(caps, ", "), out)
	if err != nil {
		t.Fatalf("test as root without %s failed: %v", strings.Join(caps, ", "), err)
	}
}

// RunOVL runs the ovl binary bin with args in the working directory dir
// ("" for the test's) with env added to the test's environment, logs the
// command line and what it printed (the middle of a long output left
// out), and returns its stdout, stderr and exit status. It fails t only
// when the binary cannot be started.
func RunOVL(t testing.TB, bin, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run ovl %s: %v", strings.Join(args, " "), err)
	}
	out := stdout.String() + stderr.String()
	if len(out) > 3000 {
		out = out[:1500] + "\n[...]\n" + out[len(out)-1500:]
	}
	line := strings.Join(args, " ")
	if len(line) > 300 {
		line = line[:300] + " [...]"
	}
	t.Logf("$ ovl %s  (exit %d)\n%s", line, code, out)
	return stdout.String(), stderr.String(), code
}
