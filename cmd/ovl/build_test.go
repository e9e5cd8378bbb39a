package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// buildTestProject writes a project with a busybox base into a fresh
// directory and returns it.
func buildTestProject(t *testing.T, yaml string) string {
	t.Helper()
	dir := testutil.SharedDir(t)
	t.Cleanup(func() { exec.Command("chmod", "-R", "u+w", filepath.Join(dir, ".vagga")).Run() })
	if err := os.WriteFile(filepath.Join(dir, "vagga.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	return dir
}

const buildTestYAML = `containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Text {/etc/one: "1"}
    - !Sh "echo built > /etc/two"
    environ: {WHO: c}
commands:
  show: !Command
    container: c
    run: cat /etc/one /etc/two; echo $WHO; exit 7
  args: !Command
    container: c
    run: [echo]
`

func TestBuildAndExecCLI(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	dir := buildTestProject(t, buildTestYAML)

	out, errOut, code := checkOVLIn(t, bin, dir, nil, "build", "c")
	if code != 0 || !strings.Contains(errOut, `[3/3] !Sh "echo built > /etc/two" … done`) || !strings.Contains(out, "c: built, 3 steps run") {
		t.Fatalf("first build: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	out, errOut, _ = checkOVLIn(t, bin, dir, nil, "build", "c")
	if strings.Count(errOut, "… cached") != 3 || !strings.Contains(out, "0 steps run") {
		t.Errorf("second build:\nstdout %s\nstderr %s", out, errOut)
	}
	if target, err := os.Readlink(filepath.Join(dir, ".vagga", "c")); err != nil || !strings.HasPrefix(target, ".roots/c.") {
		t.Errorf(".vagga/c -> %q, %v", target, err)
	}

	// --json: a stream of events, then the summary, one compact JSON
	// object per line (NDJSON) so that CI can read them as they come.
	out, _, code = checkOVLIn(t, bin, dir, nil, "build", "--json", "c")
	var statuses []string
	var summary map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("--json line %q is not one JSON object: %v\n%s", line, err, out)
		}
		if s, ok := ev["status"].(string); ok {
			statuses = append(statuses, s)
		}
		summary = ev
	}
	if code != 0 || strings.Join(statuses, ",") != "cached,cached,cached" || summary["container"] != "c" {
		t.Errorf("--json: exit %d, statuses %v, last line %v", code, statuses, summary)
	}

	// exec: the command's exit status, its output, from a subdirectory.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	out, errOut, code = checkOVLIn(t, bin, sub, nil, "exec", "-q", "show")
	if code != 7 || out != "1built\nc\n" {
		t.Errorf("exec show: exit %d, stdout %q, stderr %q; want 7 and the files", code, out, errOut)
	}
	out, _, code = checkOVLIn(t, bin, dir, nil, "exec", "-q", "args", "a", "--b")
	if code != 0 || out != "a --b\n" {
		t.Errorf("exec args: exit %d, stdout %q", code, out)
	}
	_, errOut, code = checkOVLIn(t, bin, dir, nil, "exec", "nope")
	if code != 1 || !strings.Contains(errOut, `no such command "nope"`) || !strings.Contains(errOut, "args, show") {
		t.Errorf("exec nope: exit %d, stderr %q", code, errOut)
	}

	// A failing step: exit 1, the line, how to get a shell before it.
	os.WriteFile(filepath.Join(dir, "vagga.yaml"), []byte(strings.Replace(buildTestYAML, "echo built > /etc/two", "exit 4", 1)), 0o644)
	_, errOut, code = checkOVLIn(t, bin, dir, nil, "build", "c")
	if code != 1 || !strings.Contains(errOut, "vagga.yaml:6") || !strings.Contains(errOut, "exited with status 4") ||
		!strings.Contains(errOut, "ovl build c --shell-before-step 3") || !strings.Contains(errOut, "[2/3] !Text \"/etc/one\" … cached") {
		t.Errorf("failing build: exit %d, stderr:\n%s", code, errOut)
	}
	out, errOut, code = checkOVLIn(t, bin, dir, nil, "clean", "--old", "-n")
	if code != 0 || !strings.Contains(out, "would remove 0 paths") {
		t.Errorf("clean --old -n: exit %d\n%s%s", code, out, errOut)
	}

	// Bad input: file and line, exit 1, nothing built.
	bad := buildTestProject(t, "containers:\n  c:\n    setup:\n    - !Ubuntu noble\n")
	_, errOut, code = checkOVLIn(t, bin, bad, nil, "build", "c")
	if code != 1 || !strings.Contains(errOut, "vagga.yaml:4: step !Ubuntu is not supported") {
		t.Errorf("unknown step: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(bad, ".vagga", ".layers")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad config made layers: %v", err)
	}
}

// TestBuildMessages: a failing step's hint repeats -f FILE, so pasting it
// works; one step is "1 step run"; the root a child's event names is the
// one that stays, not the temporary name it was made under.
func TestBuildMessages(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	dir := buildTestProject(t, "")
	other := filepath.Join(dir, "other.yaml")
	os.WriteFile(other, []byte("containers:\n  p:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n  c:\n    setup:\n    - !Container p\n    - !Text {/etc/x: x}\n  one:\n    setup:\n    - !Text {/etc/x: x}\n  bad:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !Sh \"exit 3\"\n"), 0o644)
	_, errOut, code := checkOVLIn(t, bin, dir, nil, "build", "-f", other, "bad")
	if code != 1 || !strings.Contains(errOut, "ovl build -f "+other+" bad --shell-before-step 2") {
		t.Errorf("hint of a build with -f: exit %d\n%s", code, errOut)
	}
	out, _, code := checkOVLIn(t, bin, dir, nil, "build", "-f", other, "one")
	if code != 0 || !strings.Contains(out, "one: built, 1 step run, ") {
		t.Errorf("build one: exit %d, %s", code, out)
	}
	out, errOut, code = checkOVLIn(t, bin, dir, nil, "build", "-f", other, "c")
	if code != 0 || !strings.Contains(errOut, "applied 1 layer into") {
		t.Fatalf("build c: exit %d\n%s%s", code, out, errOut)
	}
	i := strings.Index(errOut, "cloned p's root")
	if i < 0 {
		t.Fatalf("no clone event:\n%s", errOut)
	}
	line := errOut[i:]
	line = line[:strings.IndexByte(line, '\n')]
	_, path, _ := strings.Cut(line, " into ")
	path, _, _ = strings.Cut(path, " | ")
	if _, err := os.Stat(path); err != nil || strings.Contains(path, ".tmp") {
		t.Errorf("the event names %q (%v): %s", path, err, line)
	}
}
