package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/vagga"
)

// fileSteps is a container built from file steps only: no runner needed.
const fileSteps = `
containers:
  base:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Text
        /etc/motd: hello
        /etc/app.conf: "x = 1\n"
    - !Copy {source: /work/src, path: /opt/src, owner-uid: 1000, owner-gid: 100}
    - !Remove /var/cache
    - !EnsureDir /var/lib/app/data
    - !EmptyDir /etc
    - !Env {GREETING: hi}
    - !Depends dep.txt
    - !Text {/opt/after: "written last"}
`

func fileProject(t *testing.T) string {
	t.Helper()
	dir := project(t, fileSteps, map[string]string{
		"src/a.txt": "A", "src/sub/b.txt": "B", "dep.txt": "v1",
	})
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	if err := os.Symlink("a.txt", filepath.Join(dir, "src/link")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFileStepsBuildTheTree(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		dir := fileProject(t)
		for _, each := range []bool{true, false} {
			r, rec := mustBuild(t, dir, "base", Options{OneLayer: !each})
			if r.Ran != 9 {
				t.Errorf("each=%v: first build ran %d steps, want 9: %v", each, r.Ran, rec.statuses())
			}
			root := r.Root
			mustContain(t, root, "bin/busybox", "")
			mustContain(t, root, "opt/src/a.txt", "A")
			mustContain(t, root, "opt/src/sub/b.txt", "B")
			mustContain(t, root, "opt/after", "written last")
			mustContain(t, root, "var/lib/app/data", "")
			for _, gone := range []string{"var/cache", "etc/passwd", "etc/motd"} {
				if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("each=%v: %s still there (%v)", each, gone, err)
				}
			}
			if l, err := os.Readlink(filepath.Join(root, "opt/src/link")); err != nil || l != "a.txt" {
				t.Errorf("symlink: %q, %v", l, err)
			}
			if os.Geteuid() == 0 {
				var st = statT(t, filepath.Join(root, "opt/src/a.txt"))
				if st.Uid != 1000 || st.Gid != 100 {
					t.Errorf("!Copy owner = %d:%d, want 1000:100", st.Uid, st.Gid)
				}
			}
			if r.BuildEnv[0] != "GREETING=hi" {
				t.Errorf("build env %v", r.BuildEnv)
			}
			link, err := os.Readlink(filepath.Join(dir, ".vagga", "base"))
			if err != nil || !strings.HasPrefix(link, ".roots/base.") || filepath.Join(dir, ".vagga", link) != root {
				t.Errorf(".vagga/base -> %q (%v), root %s", link, err, root)
			}
			// The second build runs nothing.
			r2, rec2 := mustBuild(t, dir, "base", Options{OneLayer: !each})
			if r2.Ran != 0 || r2.Root != root {
				t.Errorf("each=%v: second build ran %d steps (%v), root %s vs %s", each, r2.Ran, rec2.statuses(), r2.Root, root)
			}
			// --force runs every step again, to the same result.
			r3, _ := mustBuild(t, dir, "base", Options{OneLayer: !each, Force: true})
			if r3.Ran != 9 || r3.Key != r.Key || treeHash(t, r3.Root) != treeHash(t, root) {
				t.Errorf("each=%v: forced build ran %d steps, key %s vs %s", each, r3.Ran, r3.Key, r.Key)
			}
		}
	})
}

// envRepo tells a test rerun as uid 65534 where the repository is.
const envRepo = "OVL_TEST_REPO"

// repoPath returns a path of the repository, from the test's directory
// or, in the unprivileged child, from envRepo.
func repoPath(t *testing.T, rel string) string {
	t.Helper()
	if r := os.Getenv(envRepo); r != "" {
		return filepath.Join(r, rel)
	}
	p, err := filepath.Abs(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testAsRootAndNobody runs f as root, and again as uid 65534, side by
// side.
func testAsRootAndNobody(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	if testutil.InNobodyChild() {
		t.Run("nobody", f)
		return
	}
	t.Run("root", func(t *testing.T) {
		t.Parallel()
		testutil.RequireRoot(t)
		f(t)
	})
	t.Run("nobody", func(t *testing.T) {
		t.Parallel()
		// The child runs in /: tell it where the repository is.
		repo, _ := filepath.Abs("..")
		testutil.RunAsNobody(t, envRepo+"="+repo)
	})
}

func mustContain(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	fi, err := os.Lstat(p)
	if err != nil {
		t.Errorf("%s: %v", rel, err)
		return
	}
	if content == "" {
		return
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != content || !fi.Mode().IsRegular() {
		t.Errorf("%s = %q (%v), want %q", rel, b, err, content)
	}
}

func TestEditingAStepRerunsItAndTheRest(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		steps := []string{
			"- !Tar {url: ./base.tar.gz}",
			"- !Text {/etc/one: '1'}",
			"- !Text {/etc/two: '2'}",
			"- !Text {/etc/four: '4'}",
			"- !EnsureDir /five",
			"- !Copy {source: /work/six, path: /six}",
		}
		yaml := func() string {
			return "containers:\n  c:\n    setup:\n    " + strings.Join(steps, "\n    ") + "\n"
		}
		dir := project(t, yaml(), map[string]string{"six": "6"})
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		mustBuild(t, dir, "c", Options{})

		steps[3] = "- !Text {/etc/four: 'four'}"
		writeProject(t, dir, yaml(), nil)
		r, rec := mustBuild(t, dir, "c", Options{})
		want := map[int]Status{1: StatusCached, 2: StatusCached, 3: StatusCached, 4: StatusDone, 5: StatusDone, 6: StatusDone}
		if got := rec.statuses(); !equalStatus(got, want) || r.Ran != 3 {
			t.Errorf("after editing step 4: %v (ran %d), want %v", got, r.Ran, want)
		}
		mustContain(t, r.Root, "etc/four", "four")

		// A file a step reads counts as the step: changing it reruns
		// from there.
		writeProject(t, dir, yaml(), map[string]string{"six": "six"})
		r, rec = mustBuild(t, dir, "c", Options{})
		if got := rec.statuses(); got[5] != StatusCached || got[6] != StatusDone || r.Ran != 1 {
			t.Errorf("after changing six: %v (ran %d)", got, r.Ran)
		}
		mustContain(t, r.Root, "six", "six")
	})
}

func equalStatus(a, b map[int]Status) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestFailingStepKeepsEarlierLayers(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		broken := "containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !EnsureDir /a\n    - !Text {/missing/dir/file: x}\n    - !Text {/a/after: y}\n"
		dir := project(t, broken, nil)
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		_, rec, err := buildOnce(t, dir, "c", Options{})
		var se *StepError
		if !errors.As(err, &se) || !errors.Is(err, ErrStepFailed) || !errors.Is(err, ErrPath) {
			t.Fatalf("err = %v, want a StepError wrapping ErrStepFailed and ErrPath", err)
		}
		if se.Index != 3 || se.Pos.Line != 6 || !strings.Contains(err.Error(), "vagga.yaml:6") || !strings.Contains(err.Error(), "/missing") {
			t.Errorf("error %q: want step 3 at vagga.yaml:6 naming /missing", err)
		}
		if got := rec.statuses(); got[1] != StatusDone || got[2] != StatusDone || got[3] != StatusFailed || got[4] != "" {
			t.Errorf("statuses %v", got)
		}
		assertNothingHalfMade(t, dir)
		if _, err := os.Lstat(filepath.Join(dir, ".vagga", "c")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed build made .vagga/c: %v", err)
		}

		fixed := strings.Replace(broken, "/missing/dir/file", "/a/file", 1)
		writeProject(t, dir, fixed, nil)
		r, rec := mustBuild(t, dir, "c", Options{})
		if got := rec.statuses(); got[1] != StatusCached || got[2] != StatusCached || got[3] != StatusDone || got[4] != StatusDone || r.Ran != 2 {
			t.Errorf("after the fix: %v, ran %d; want 1-2 cached, 3-4 run", got, r.Ran)
		}
		mustContain(t, r.Root, "a/file", "x")
	})
}

// assertNothingHalfMade checks that no unfinished layer or root is left.
func assertNothingHalfMade(t *testing.T, dir string) {
	t.Helper()
	for _, pattern := range []string{".vagga/.layers/.tmp/*", ".vagga/.roots/.*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		if len(m) > 0 {
			t.Errorf("left behind: %v", m)
		}
	}
	layers, _ := filepath.Glob(filepath.Join(dir, ".vagga/.layers/*"))
	for _, l := range layers {
		if strings.HasPrefix(filepath.Base(l), ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(l, "layer")); err != nil {
			t.Errorf("layer dir %s without its layer: %v", l, err)
		}
	}
}

func TestBadInputBuildsNothing(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       string
		sentinel   error
	}{
		{"missing tar", "containers:\n  c:\n    setup:\n    - !EnsureDir /x\n    - !Tar {url: ./nope.tar.gz}\n", "vagga.yaml:5", os.ErrNotExist},
		{"missing copy source", "containers:\n  c:\n    setup:\n    - !Copy {source: /work/nope, path: /x}\n", "vagga.yaml:4", os.ErrNotExist},
		{"cycle", "containers:\n  a:\n    setup: [!Container b]\n  b:\n    setup: [!Container a]\n", "has cyclic dependency", vagga.ErrCycle},
		{"unknown step", "containers:\n  c:\n    setup:\n    - !Alpine v3.20\n", "vagga.yaml:4", vagga.ErrUnsupported},
		{"invalid yaml", "containers:\n  c:\n    setup: [!Sh x\n", "invalid YAML", vagga.ErrSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := project(t, tc.yaml, nil)
			cfg, err := vagga.Load(filepath.Join(dir, "vagga.yaml"))
			if err == nil {
				_, err = New(cfg, Options{}).Build(t.Context(), "c")
			}
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Join(dir, "vagga.yaml")) {
				t.Errorf("err = %v; want %v naming %s", err, tc.sentinel, tc.want)
			}
			layers, _ := filepath.Glob(filepath.Join(dir, ".vagga/.layers/[0-9a-f]*"))
			roots, _ := filepath.Glob(filepath.Join(dir, ".vagga/.roots/*"))
			if len(layers)+len(roots) > 0 {
				t.Errorf("bad input left %v %v", layers, roots)
			}
		})
	}
}

// Paths through a symlink of the container are refused, naming it: a
// layer never gets written outside itself, and a !Remove does not
// silently miss.
func TestSymlinkInPathRefused(t *testing.T) {
	for _, step := range []string{"!Text {/lnk/x: y}", "!Remove /lnk/passwd", "!EnsureDir /lnk/sub", "!Copy {source: /work/f, path: /lnk/f}"} {
		t.Run(step, func(t *testing.T) {
			dir := project(t, "containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !Copy {source: /work/lnk, path: /lnk}\n    - "+step+"\n",
				map[string]string{"f": "f"})
			testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
			if err := os.Symlink("etc", filepath.Join(dir, "lnk")); err != nil {
				t.Fatal(err)
			}
			_, _, err := buildOnce(t, dir, "c", Options{})
			var se *StepError
			if !errors.As(err, &se) || se.Index != 3 || !errors.Is(err, ErrPath) || !strings.Contains(err.Error(), "/lnk is a symlink") {
				t.Errorf("err = %v; want step 3 refused for going through /lnk", err)
			}
		})
	}
}
