// Package kerneltest is ovl's acceptance on kernels other than this one:
// it runs the ovl binary under each simulated kernel (internal/kernelsim),
// as root and as uid 65534, and checks that `ovl check` picks the fastest
// backend that works there and that writable runs, Snapshot volumes,
// `ovl mount` of a deep stack with long paths and a long build work, or,
// where nothing can, fail with one line that names what is missing.
//
// cmd/ovl's tests run it with a few builds (make test); the integration
// tests run every cell with a build, and kernels that combine two
// differences (make test-integration). The table of what each cell must
// give (Expect) is the one README.md's "Older kernels" section shows.
package kerneltest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/kernelsim"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// A Cell is one simulated kernel and one user.
type Cell struct {
	Kernel kernelsim.Kernel
	Nobody bool // uid 65534; else root
}

// Name is "KERNEL/root" or "KERNEL/nobody".
func (c Cell) Name() string {
	if c.Nobody {
		return c.Kernel.Name + "/nobody"
	}
	return c.Kernel.Name + "/root"
}

// Cells is every kernel of ks for root and for uid 65534.
func Cells(ks ...kernelsim.Kernel) []Cell {
	var out []Cell
	for _, k := range ks {
		out = append(out, Cell{Kernel: k}, Cell{Kernel: k, Nobody: true})
	}
	return out
}

// Want is what ovl must do in a cell.
type Want struct {
	// Check is the backend `ovl check` picks for runs and builds.
	Check string
	// Mount is the backend `ovl mount` picks; "" when no backend can
	// mount in place (it then refuses, naming MountMissing).
	Mount        string
	MountMissing string
	// Runs: writable runs, Snapshot volumes and builds work; else each
	// run fails with one line naming RunsMissing, as `ovl check` does.
	Runs        bool
	RunsMissing string
}

// Expect is what ovl must do in c. The kernels combine: a difference that
// stops a backend stops it in every combination.
func Expect(c Cell) Want {
	if !c.Nobody {
		// Root mounts kernel overlay in place: with mount(2) where the
		// new mount API is missing or refused, with xattr whiteouts where
		// mknod is refused (read by Linux 6.7+).
		return Want{Check: backend.Native, Mount: backend.Native, Runs: true}
	}
	w := Want{Check: backend.Native, Mount: backend.FUSE, Runs: true}
	if c.Kernel.Has(kernelsim.NoDevFuse) {
		// An ordinary user's mount in place is FUSE through fusermount3:
		// kernel overlay would not outlive the user namespace it needs.
		w.Mount, w.MountMissing = "", "/dev/fuse"
	}
	if c.Kernel.Has(kernelsim.NoUserns) {
		// No namespace for a run; FUSE still mounts through fusermount3.
		w.Check, w.Runs, w.RunsMissing = backend.Copy, false, "user namespace"
	}
	return w
}

// Options say what a cell does besides check, runs and the deep mount.
type Options struct {
	// BuildSteps is the length of the build a cell runs (0: none).
	BuildSteps func(Cell) int
	// Layers is the depth of the stack `ovl mount` mounts (default 300),
	// each layer's path about 90 characters.
	Layers int
}

// BuildOVL builds the ovl command of package dir (a path go build
// takes, e.g. "../cmd/ovl") into a directory of t that every user can
// reach, and returns its path.
func BuildOVL(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(testutil.SharedDir(t), "ovl")
	if out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// Environment of a cell's rerun.
const (
	envBinary = "OVL_KERNELTEST_BINARY"
	envDir    = "OVL_KERNELTEST_DIR"
	envSteps  = "OVL_KERNELTEST_STEPS"
	envLayers = "OVL_KERNELTEST_LAYERS"
)

// Run runs each cell as a subtest of t with the ovl binary bin: the test
// is run again under the cell's kernel and user (testutil's reruns
// through kernelsim.Wrap), where it runs the cell; then, under
// kernelsim.NoMknod, the layers the cell kept are mounted with kernel
// overlay here and must show the tree the run saw. Needs root.
func Run(t *testing.T, bin string, cells []Cell, o Options) {
	for _, c := range cells {
		t.Run(c.Name(), func(t *testing.T) {
			if k, ok := kernelsim.Active(); ok {
				if k.Name != c.Kernel.Name {
					t.Fatalf("rerun under %s for cell %s", k.Name, c.Name())
				}
				runCell(t, c)
				return
			}
			testutil.RequireRoot(t)
			t.Parallel()
			dir := testutil.SharedDir(t)
			layers := o.Layers
			if layers == 0 {
				layers = 300
			}
			steps := 0
			if o.BuildSteps != nil {
				steps = o.BuildSteps(c)
			}
			env := []string{envBinary + "=" + bin, envDir + "=" + dir, envSteps + "=" + strconv.Itoa(steps), envLayers + "=" + strconv.Itoa(layers)}
			if c.Nobody {
				testutil.RunAsNobodyWrapped(t, kernelsim.Wrap(c.Kernel), env...)
			} else {
				testutil.RunAsRootWrapped(t, kernelsim.Wrap(c.Kernel), env...)
			}
			checkKeptLayers(t, bin, dir)
		})
	}
}

// ovl runs the ovl binary of a cell, with its environment.
type ovl struct {
	t   *testing.T
	bin string
	env []string
}

// run runs ovl with args in dir and returns its stdout, stderr and exit
// status (testutil.RunOVL).
func (o ovl) run(dir string, args ...string) (string, string, int) {
	o.t.Helper()
	return testutil.RunOVL(o.t, o.bin, dir, o.env, args...)
}

// oneLine fails t unless stderr has one error line ("ovl: ...", besides
// warnings) saying what ovl could not do, naming missing (when given).
func oneLine(t *testing.T, what, stderr, missing string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if !strings.Contains(l, "level=WARN") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "ovl: ") {
		t.Errorf("%s: want one error line from ovl, got %d: %q", what, len(lines), stderr)
	}
	if missing != "" && !strings.Contains(stderr, missing) {
		t.Errorf("%s: %q does not name what is missing (%s)", what, stderr, missing)
	}
}

// runCell runs in the rerun, under the cell's kernel and user.
func runCell(t *testing.T, c Cell) {
	want := Expect(c)
	dir := os.Getenv(envDir)
	o := ovl{t: t, bin: os.Getenv(envBinary),
		env: []string{"OVL_RUNTIME_DIR=" + filepath.Join(dir, "run"), "OVL_STATE_DIR=" + filepath.Join(dir, "state"), "OVL_BACKEND="}}

	t.Run("check", func(t *testing.T) {
		o.t = t
		out, _, code := o.run(dir, "check", "--json")
		var v struct {
			Backend string   `json:"backend"`
			Reasons []string `json:"reasons"`
			Hints   []string `json:"hints"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("ovl check --json: %v", err)
		}
		if v.Backend != want.Check {
			t.Errorf("ovl check picks %s, want %s", v.Backend, want.Check)
		}
		if wantCode := map[bool]int{true: 0, false: 1}[want.Check != backend.Copy]; code != wantCode {
			t.Errorf("ovl check exited %d, want %d", code, wantCode)
		}
		if text := strings.Join(append(v.Reasons, v.Hints...), "; "); want.RunsMissing != "" && !strings.Contains(text, want.RunsMissing) {
			t.Errorf("ovl check does not say what runs need (%s): %s", want.RunsMissing, text)
		}
	})

	root := filepath.Join(dir, "root")
	testutil.BusyboxRoot(t, root, "etc/sub", "data")
	for name, content := range map[string]string{"etc/hostname": "box\n", "etc/sub/x": "x\n", "data/v": "v\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := testutil.TreeHash(t, root)
	t.Run("run --writable", func(t *testing.T) {
		o.t = t
		out, errOut, code := o.run(dir, "run", "--writable", root, "--", "sh", "-c", "echo w > /etc/w && rm /etc/hostname && cat /etc/w && ls /etc/hostname 2>/dev/null || echo gone")
		if !want.Runs {
			oneLine(t, "ovl run --writable", errOut, want.RunsMissing)
			return
		}
		if code != 0 || out != "w\ngone\n" {
			t.Errorf("ovl run --writable: exit %d, stdout %q; want 0, \"w\\ngone\\n\"", code, out)
		}
	})
	t.Run("snapshot volume", func(t *testing.T) {
		o.t = t
		out, errOut, code := o.run(dir, "run", "--volume", "/data=snapshot,size=1M", root, "--", "sh", "-c", "cat /data/v && echo s > /data/v && cat /data/v")
		if !want.Runs {
			oneLine(t, "ovl run --volume /data=snapshot", errOut, want.RunsMissing)
			return
		}
		if code != 0 || out != "v\ns\n" {
			t.Errorf("snapshot volume: exit %d, stdout %q; want 0, \"v\\ns\\n\"", code, out)
		}
	})
	if testutil.TreeHash(t, root) != before {
		t.Errorf("a run changed its root %s", root)
	}
	if c.Kernel.Has(kernelsim.NoMknod) {
		t.Run("kept layers", func(t *testing.T) {
			o.t = t
			keepLayers(t, o, dir, root)
		})
	}

	t.Run(fmt.Sprintf("mount %s layers", os.Getenv(envLayers)), func(t *testing.T) {
		o.t = t
		n, _ := strconv.Atoi(os.Getenv(envLayers))
		mountDeep(t, o, dir, n, want)
	})

	if steps, _ := strconv.Atoi(os.Getenv(envSteps)); steps > 0 {
		t.Run(fmt.Sprintf("build %d steps", steps), func(t *testing.T) {
			o.t = t
			buildLong(t, o, dir, steps, want)
		})
	}
}

// mountDeep mounts a stack of n layers whose paths are about 90
// characters long (27 kB of lowerdir=: six pages) with `ovl mount`, reads
// through it, writes into it, and unmounts it with `ovl umount`.
func mountDeep(t *testing.T, o ovl, dir string, n int, want Want) {
	base := filepath.Join(dir, "deep")
	pad := strings.Repeat("p", max(0, 80-len(base)))
	lowers := make([]string, n)
	for i := range lowers {
		lowers[i] = filepath.Join(base, fmt.Sprintf("layer-%03d-%s", i, pad))
		if err := os.MkdirAll(lowers[i], 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"f" + strconv.Itoa(i): strconv.Itoa(i), "common": strconv.Itoa(i)} {
			if err := os.WriteFile(filepath.Join(lowers[i], name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d layers, paths of %d characters, lowerdir= of %d bytes", n, len(lowers[0]), len(strings.Join(lowers, ":")))
	upper, work, target := filepath.Join(dir, "deep-u"), filepath.Join(dir, "deep-w"), filepath.Join(dir, "deep-m")
	for _, d := range []string{upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CleanupMount(t, target)
	out, errOut, code := o.run(dir, "mount", "--lower", strings.Join(lowers, ":"), "--upper", upper, "--work", work, target)
	if want.Mount == "" {
		if code == 0 {
			o.run(dir, "umount", target)
			t.Fatalf("ovl mount worked where no backend should: %s", out)
		}
		oneLine(t, "ovl mount", errOut, want.MountMissing)
		return
	}
	if code != 0 {
		t.Fatalf("ovl mount of %d layers exited %d", n, code)
	}
	if !strings.Contains(out, want.Mount+" backend") {
		t.Errorf("ovl mount: %q, want the %s backend", out, want.Mount)
	}
	defer func() {
		if _, _, code := o.run(dir, "umount", target); code != 0 {
			t.Errorf("ovl umount exited %d", code)
		}
	}()
	for file, content := range map[string]string{"common": "0", "f0": "0", "f" + strconv.Itoa(n-1): strconv.Itoa(n - 1)} {
		if b, err := os.ReadFile(filepath.Join(target, file)); err != nil || string(b) != content {
			t.Errorf("%s through the mount: %q, %v; want %q", file, b, err, content)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("new"), 0o644); err != nil {
		t.Error(err)
	}
}

// buildLong builds a project of steps steps: a busybox !Tar and !Sh steps,
// each a layer (.vagga/.layers/<64 hex>/layer: 38 of their paths pass a
// page).
func buildLong(t *testing.T, o ovl, dir string, steps int, want Want) {
	proj := filepath.Join(dir, "project")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.BusyboxTar(t, filepath.Join(proj, "base.tar.gz"))
	var y strings.Builder
	y.WriteString("containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n")
	for i := 1; i < steps; i++ {
		fmt.Fprintf(&y, "    - !Sh \"echo %d > /etc/step%d\"\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(proj, "vagga.yaml"), []byte(y.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := o.run(proj, "build", "c")
	if !want.Runs {
		if code == 0 {
			t.Fatalf("ovl build worked where no run can: %s", out)
		}
		if !strings.Contains(errOut, "ovl: ") {
			t.Errorf("ovl build failed without saying why: %q", errOut)
		}
		return
	}
	if code != 0 || !strings.Contains(out, fmt.Sprintf("built, %d steps run", steps)) {
		t.Fatalf("ovl build of %d steps: exit %d, stdout %q", steps, code, out)
	}
	last := filepath.Join(proj, ".vagga", "c", "etc", "step"+strconv.Itoa(steps-1))
	if b, err := os.ReadFile(last); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(steps-1) {
		t.Errorf("the built root's %s: %q, %v", last, b, err)
	}
}
