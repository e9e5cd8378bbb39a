package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(testutil.Main(m))
}

// backendNames are the backends every runner test runs on.
var backendNames = []string{backend.Native, backend.FUSE, backend.Copy}

// decisionFor returns the decision for the backend of that name, as a
// caller that forces it gets, failing (not skipping) a test on a backend
// that is not there.
func decisionFor(t *testing.T, name string) selector.Decision {
	t.Helper()
	d, err := selector.Force(name, "the test")
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	return d
}

// eachBackendAndUser runs f for every backend, as root and as uid 65534,
// side by side.
func eachBackendAndUser(t *testing.T, f func(t *testing.T, d selector.Decision)) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("root", func(t *testing.T) {
				t.Parallel()
				testutil.RequireRoot(t)
				f(t, decisionFor(t, name))
			})
			t.Run("nobody", func(t *testing.T) {
				t.Parallel()
				if testutil.InNobodyChild() {
					f(t, decisionFor(t, name))
					return
				}
				testutil.RunAsNobody(t)
			})
		})
	}
}

// makeRoot builds a tiny container root from busybox-static in a
// directory the current user owns, and returns it.
func makeRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(testutil.SharedDir(t), "root")
	testutil.BusyboxRoot(t, root, "etc/sub/deeper", "var/lib")
	files := map[string]string{
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":           "root:x:0:\n",
		"etc/hostname":        "box\n",
		"etc/sub/deeper/file": "deep\n",
		"var/lib/state":       "state\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An unusual mode, to see that a snapshot keeps it.
	if err := os.Chmod(filepath.Join(root, "etc"), 0o751); err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs args in root and returns stdout, stderr and the result.
func run(t *testing.T, cfg runner.Config, args ...string) (string, string, runner.Result, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cfg.Args = args
	cfg.Stdout, cfg.Stderr = &stdout, &stderr
	if cfg.TransientDir == "" {
		cfg.TransientDir = filepath.Join(testutil.SharedDir(t), "transient")
	}
	res, err := runner.Run(context.Background(), cfg)
	return stdout.String(), stderr.String(), res, err
}

// mustRun is run that fails t on an error or a nonzero exit.
func mustRun(t *testing.T, cfg runner.Config, args ...string) string {
	t.Helper()
	out, errOut, res, err := run(t, cfg, args...)
	if err != nil {
		t.Fatalf("run %q: %v\nstderr: %s", args, err, errOut)
	}
	if res.ExitCode != 0 {
		t.Fatalf("run %q: exit %d\nstdout: %s\nstderr: %s", args, res.ExitCode, out, errOut)
	}
	return out
}

// noMountsUnder fails t if the host mount namespace has anything
// mounted under dir.
func noMountsUnder(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			t.Errorf("left mounted on the host: %s", line)
		}
	}
}

// helperEntry runs runner.Run in a process of its own, so that a test
// can kill it: the config comes as JSON in $OVL_TEST_RUN.
const helperEntry = "runner-test-run"

// helperConfig is the part of runner.Config a helper process gets.
type helperConfig struct {
	Layers       []string
	Writable     bool
	Decision     selector.Decision
	TransientDir string
	Volumes      []runner.Volume
	Args         []string
}

func init() {
	reexec.Register(helperEntry, func() {
		var hc helperConfig
		if err := json.Unmarshal([]byte(os.Getenv("OVL_TEST_RUN")), &hc); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		res, err := runner.Run(context.Background(), runner.Config{
			Layers: hc.Layers, Writable: hc.Writable, Decision: hc.Decision, TransientDir: hc.TransientDir,
			Volumes: hc.Volumes, Args: hc.Args, Stdout: os.Stdout, Stderr: os.Stderr,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(125)
		}
		os.Exit(res.ExitCode)
	})
}

// startSleepingRun starts runner.Run of hc in a helper process, with a
// command that prints "ready" and sleeps, and returns once it is ready.
// The helper is killed when t ends.
func startSleepingRun(t *testing.T, hc helperConfig) *exec.Cmd {
	t.Helper()
	hc.Args = []string{"sh", "-c", "echo ready; exec sleep 1000"}
	data, err := json.Marshal(hc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := reexec.Command(helperEntry)
	cmd.Env = append(cmd.Env, "OVL_TEST_RUN="+string(data))
	cmd.Stderr = os.Stderr
	testutil.StartReady(t, cmd)
	return cmd
}
