package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// This file runs ovl where CI jobs run: inside containers of rootful
// podman, as root and as uid 1000, with the default capabilities and
// seccomp profile, with /dev/fuse, with CAP_SYS_ADMIN, privileged, and
// under a seccomp profile that forbids new namespaces as Docker's default
// one does; with ovl's state and the project on the container's overlay
// root, and on a volume.

// ciConfig is one way of starting the container.
type ciConfig struct {
	name string
	args []string // podman run flags
}

// ciUser is who runs ovl in the container.
type ciUser struct {
	name string
	args []string // podman run flags
	root string   // the container root `ovl run` runs: the user's own
	home string
}

// ciPlace is where the state and the project are.
type ciPlace struct {
	name   string
	volume bool
}

// ciWant is what a cell must give: the backend `ovl check` picks for
// runs, the one builds of the project get, and whether runs and builds
// work there at all (where not, ovl must say what is missing).
type ciWant struct {
	check, build string
	runs, builds bool
	missing      string // what ovl names where runs or builds cannot work
}

var (
	ciConfigs = []ciConfig{
		{"default", nil},
		{"fuse", []string{"--device", "/dev/fuse"}},
		{"fuse+sys_admin", []string{"--device", "/dev/fuse", "--cap-add", "SYS_ADMIN"}},
		{"privileged", []string{"--privileged"}},
		{"no-namespaces", nil}, // args: the seccomp profile, made by the test
	}
	ciUsers = []ciUser{
		{"root", nil, "/srv/root", "/root"},
		{"uid1000", []string{"--user", "1000:1000"}, "/home/user/root", "/home/user"},
	}
	ciPlaces = []ciPlace{{"container-root", false}, {"volume", true}}
)

// ciExpect is the backend each cell must pick: the fastest that works
// there. Runs keep their uppers on a tmpfs of their own, so kernel
// overlay works for them wherever a namespace can be made (in a user
// namespace without CAP_SYS_ADMIN, as for an ordinary user); builds keep
// their layers in the project, where an overlay root refuses kernel
// overlay's uppers and FUSE needs /dev/fuse. Without namespaces only
// copy runs, through chroot, which uid 1000 may not use, and which
// cannot give a build step the project at /work.
func ciExpect(c ciConfig, u ciUser, p ciPlace) ciWant {
	if c.name == "no-namespaces" {
		if u.name != "root" {
			return ciWant{check: "copy", build: "copy", missing: "CAP_SYS_CHROOT"}
		}
		return ciWant{check: "copy", build: "copy", runs: true, missing: "needs a bind mount"}
	}
	w := ciWant{check: "native", build: "native", runs: true, builds: true}
	if !p.volume {
		w.build = "copy"
		if c.name != "default" {
			w.build = "fuse"
		}
	}
	return w
}

// ciScript runs in each container: ovl check, a writable run and a
// snapshot volume of the user's root, a build of the examples project
// and three of its commands, and checks that the roots did not change.
// It prints "STEP name rc=N" per step and what each printed.
const ciScript = `
step() { name=$1; shift; "$@" >/tmp/step.out 2>&1; rc=$?; echo "STEP $name rc=$rc"; sed 's/^/  | /' /tmp/step.out; }
sum() { tar -C "$1" -cf - . 2>/dev/null | md5sum | cut -d' ' -f1; }
before=$(sum "$ROOT")
ovl check --json >/tmp/check.json 2>/tmp/check.err; echo "STEP check rc=$?"
for k in backend layer_dir; do echo "CHECK $k=$(sed -n "s/^  \"$k\": \"\(.*\)\",*\$/\1/p" /tmp/check.json | head -n1)"; done
sed 's/^/  | /' /tmp/check.err
step run ovl run --writable "$ROOT" -- sh -c 'echo changed > /etc/motd && rm -r /etc/app && cat /etc/motd'
step snapshot ovl run --volume /etc=snapshot,size=1M "$ROOT" -- sh -c 'echo snap > /etc/motd && cat /etc/motd'
[ "$(sum "$ROOT")" = "$before" ] && echo "ROOT unchanged" || echo "ROOT CHANGED"
if [ -n "$VOL" ]; then cp -R /project/. "$VOL/project/" && cd "$VOL/project"; else cd /project; fi
step build ovl build app
built=$(sum .vagga/app/)
step exec-hello ovl exec hello
step exec-snapshot ovl exec snapshot
step exec-scratch ovl exec scratch
[ "$(sum .vagga/app/)" = "$built" ] && echo "BUILT unchanged" || echo "BUILT CHANGED"
ls -a /var/lib/ovl "$HOME/.local/state/ovl" .vagga 2>/dev/null | grep -c '^probe-' | sed 's/^/PROBE-DIRS /'
`

// ciResult is what one cell's script printed.
type ciResult struct {
	steps           map[string]int // step name: exit status
	out             string
	check, layerDir string
	build, exec     string // the backends build and exec said they used
}

func parseCI(out string) ciResult {
	r := ciResult{steps: map[string]int{}, out: out}
	for _, line := range strings.Split(out, "\n") {
		var name string
		var rc int
		if n, _ := fmt.Sscanf(line, "STEP %s rc=%d", &name, &rc); n == 2 {
			r.steps[name] = rc
		}
		if v, ok := strings.CutPrefix(line, "CHECK backend="); ok {
			r.check = v
		}
		if v, ok := strings.CutPrefix(line, "CHECK layer_dir="); ok {
			r.layerDir = v
		}
		if i := strings.Index(line, "built, "); i >= 0 && strings.Contains(line, " backend)") {
			r.build = backendIn(line[i:])
		}
		if i := strings.Index(line, "[hello] in container app, "); i >= 0 {
			r.exec = backendIn(line[i:])
		}
	}
	return r
}

// backendIn returns the word before "backend" in s.
func backendIn(s string) string {
	f := strings.Fields(strings.NewReplacer("(", " ", ")", " ", ",", " ").Replace(s))
	for i := 1; i < len(f); i++ {
		if f[i] == "backend" {
			return f[i-1]
		}
	}
	return ""
}

// TestCIContainers is the matrix: every configuration, user and place
// in one podman, each cell one container bounded in time. In every cell
// ovl check must pick the fastest backend that works there, a writable
// run, a snapshot volume, a build of the examples project and its
// commands must work and leave the roots unchanged; where something
// cannot work (no namespaces), ovl must say what is missing.
func TestCIContainers(t *testing.T) {
	requirePodman(t)
	start := time.Now()
	p := newPodman(t, "ci", "")
	p.importRoot(ciImage(t), "localhost/ovlci")
	profile := noNamespacesProfile(t)
	var table []string
	for _, c := range ciConfigs {
		if c.name == "no-namespaces" {
			c.args = []string{"--security-opt", "seccomp=" + profile}
		}
		t.Run(c.name, func(t *testing.T) {
			for _, u := range ciUsers {
				for _, pl := range ciPlaces {
					t.Run(u.name+"/"+pl.name, func(t *testing.T) { table = append(table, ciCell(t, p, c, u, pl)) })
				}
			}
		})
	}
	t.Logf("the matrix took %v:\n| container | user | state and project | `ovl check` picks | run --writable | snapshot | build | exec | time |\n|---|---|---|---|---|---|---|---|---|\n%s",
		time.Since(start).Round(time.Second), strings.Join(table, "\n"))
}

// ciCell runs one cell and returns its row of the table.
func ciCell(t *testing.T, p *podman, c ciConfig, u ciUser, pl ciPlace) string {
	args := []string{"run", "--rm", "-e", "ROOT=" + u.root}
	args = append(append(args, c.args...), u.args...)
	if pl.volume {
		vol := testutil.SharedDir(t)
		for _, d := range []string{"state", "project"} {
			if err := os.Mkdir(filepath.Join(vol, d), 0o777); err != nil {
				t.Fatal(err)
			}
		}
		if u.name != "root" {
			for _, d := range []string{"state", "project"} {
				if err := os.Chown(filepath.Join(vol, d), 1000, 1000); err != nil {
					t.Fatal(err)
				}
			}
		}
		state := "/var/lib/ovl"
		if u.name != "root" {
			state = u.home + "/.local/state/ovl"
		}
		args = append(args, "-v", filepath.Join(vol, "state")+":"+state, "-v", vol+":/vol", "-e", "VOL=/vol")
	}
	args = append(args, "localhost/ovlci", "sh", "-c", ciScript)
	t0 := time.Now()
	out, err := p.run("", args...)
	took := time.Since(t0).Round(100 * time.Millisecond)
	if err != nil {
		t.Errorf("the container failed (%v): %v", took, err)
		return fmt.Sprintf("| %s | %s | %s | container failed | | | | | %v |", c.name, u.name, pl.name, took)
	}
	r := parseCI(out)
	want := ciExpect(c, u, pl)
	t.Logf("%s: check %s (layer dir %s), build %s, exec %s, in %v", t.Name(), r.check, r.layerDir, r.build, r.exec, took)
	t.Logf("what the container printed:\n%s", out)
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf(format, a...)
	}
	if r.check != want.check {
		fail("ovl check picked %q, want %q", r.check, want.check)
	}
	if want.runs {
		for _, s := range []string{"check", "run", "snapshot"} {
			if r.steps[s] != 0 {
				fail("step %s: exit %d, want 0", s, r.steps[s])
			}
		}
		if !strings.Contains(out, "  | changed\n") || !strings.Contains(out, "  | snap\n") {
			fail("the writable run or the snapshot did not print what it wrote")
		}
	} else {
		if r.steps["check"] != 1 || r.steps["run"] != 125 || !strings.Contains(out, want.missing) {
			fail("where no run can start: check exit %d (want 1), run exit %d (want 125), and a message naming %q", r.steps["check"], r.steps["run"], want.missing)
		}
	}
	if !strings.Contains(out, "ROOT unchanged") {
		fail("the runs changed the container root")
	}
	if want.builds {
		for _, s := range []string{"build", "exec-hello", "exec-snapshot", "exec-scratch"} {
			if r.steps[s] != 0 {
				fail("step %s: exit %d, want 0", s, r.steps[s])
			}
		}
		if r.build != want.build {
			fail("the build used %q, want %q", r.build, want.build)
		}
		if r.exec != want.check {
			fail("ovl exec's run used %q, want %q (as ovl run)", r.exec, want.check)
		}
		if !strings.Contains(out, "BUILT unchanged") {
			fail("the commands changed the built container")
		}
		if !strings.Contains(out, "removed /opt/app for this run only") || !strings.Contains(out, "hello from the base container") {
			fail("the commands did not print what they should")
		}
	} else if r.steps["build"] == 0 || !strings.Contains(out, want.missing) {
		fail("a build where it cannot work: exit %d, want a failure naming %q", r.steps["build"], want.missing)
	}
	if strings.Contains(out, "level=WARN msg=\"probe") || !strings.Contains(out, "PROBE-DIRS 0") {
		fail("the probes warned or left scratch dirs behind")
	}
	works := func(step, backend string) string {
		if r.steps[step] == 0 {
			if backend != "" {
				return "works (" + backend + ")"
			}
			return "works"
		}
		return fmt.Sprintf("fails (%d)", r.steps[step])
	}
	return fmt.Sprintf("| %s | %s | %s | %s (%s) | %s | %s | %s | %s | %v |", c.name, u.name, pl.name, r.check, r.layerDir,
		works("run", ""), works("snapshot", ""), works("build", r.build), works("exec-hello", r.exec), took)
}

// ciImage makes the root of the image the cells run: busybox, a static
// ovl, root and uid 1000 with homes, a container root for each to run
// (/srv/root root's, /home/user/root the user's), and the examples
// project with its base tarball, the user's.
func ciImage(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "image")
	testutil.BusyboxRoot(t, root, "home/user", "srv", "project")
	bin := staticOvl(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/ovl"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"srv/root", "home/user/root"} {
		testutil.BusyboxRoot(t, filepath.Join(root, r), "etc/app")
		if err := os.WriteFile(filepath.Join(root, r, "etc/motd"), []byte("welcome\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, r, "etc/app/conf"), []byte("conf\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("cp", "-R", "../examples/.", filepath.Join(root, "project")).CombinedOutput()
	if err != nil {
		t.Fatalf("copy the examples project: %v\n%s", err, out)
	}
	testutil.BusyboxTar(t, filepath.Join(root, "project/base.tar.gz"))
	for _, d := range []string{"home/user", "project"} {
		if out, err := exec.Command("chown", "-R", "1000:1000", filepath.Join(root, d)).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v\n%s", d, err, out)
		}
	}
	return root
}

var (
	buildStatic sync.Once
	staticPath  string
	staticErr   error
)

// staticOvl builds ovl without cgo (a static binary that runs in any
// image) once per test run, next to ovlBinary's, and returns its path;
// $OVL_TEST_STATIC_OVL names another build to run instead (an older one,
// to measure the table before a change).
func staticOvl(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("OVL_TEST_STATIC_OVL"); p != "" {
		return p
	}
	dir := filepath.Dir(ovlBinary(t))
	buildStatic.Do(func() {
		staticPath = filepath.Join(dir, "ovl-static")
		cmd := exec.Command("go", "build", "-o", staticPath, "../cmd/ovl")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			staticErr = fmt.Errorf("CGO_ENABLED=0 go build ../cmd/ovl: %w\n%s", err, out)
		}
	})
	if staticErr != nil {
		t.Fatal(staticErr)
	}
	return staticPath
}

// noNamespacesProfile writes podman's default seccomp profile changed as
// Docker's default one is for a container without CAP_SYS_ADMIN: unshare
// and clone3 refused, clone allowed only without namespace flags, and
// EPERM for what the profile does not allow. It returns its path.
func noNamespacesProfile(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/usr/share/containers/seccomp.json")
	if err != nil {
		t.Fatalf("podman's seccomp profile: %v", err)
	}
	var prof map[string]any
	if err := json.Unmarshal(data, &prof); err != nil {
		t.Fatal(err)
	}
	refused := map[string]bool{"unshare": true, "clone": true, "clone3": true, "setns": true}
	var rules []any
	for _, r := range prof["syscalls"].([]any) {
		rule := r.(map[string]any)
		var names []any
		for _, n := range rule["names"].([]any) {
			if !refused[n.(string)] {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			rule["names"] = names
			rules = append(rules, rule)
		}
	}
	const nsFlags = 0x7E020000 // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
	rules = append(rules,
		map[string]any{"names": []string{"clone"}, "action": "SCMP_ACT_ALLOW",
			"args": []any{map[string]any{"index": 0, "value": nsFlags, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}}},
		map[string]any{"names": []string{"clone3"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
		map[string]any{"names": []string{"unshare", "setns"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
	)
	prof["syscalls"] = rules
	prof["defaultErrnoRet"] = 1
	out, err := json.Marshal(prof)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seccomp-no-namespaces.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
