package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/vagga"
)

// TestPrerequisiteOrder checks the order vagga's launcher runs
// prerequisites in, with the cases of vagga's own tests
// (src/launcher/prerequisites.rs).
func TestPrerequisiteOrder(t *testing.T) {
	for _, tc := range []struct {
		deps     map[string][]string
		src, out []string
	}{
		{nil, []string{"a", "b"}, []string{"a", "b"}},
		{map[string][]string{"a": {"pa1"}, "b": {"pb1", "pb2"}}, []string{"a"}, []string{"pa1", "a"}},
		{map[string][]string{"a": {"pa1", "pa2"}, "b": {"pb1", "pb2"}}, []string{"a", "b"}, []string{"pa1", "pa2", "a", "pb1", "pb2", "b"}},
		{map[string][]string{"a": {"b"}, "b": {"a"}}, []string{"a", "b"}, []string{"a", "b"}},
		{map[string][]string{"a": {"b"}, "b": {"a"}}, []string{"a"}, []string{"b", "a"}},
		{map[string][]string{"a": {"b"}, "b": {"a"}, "c": {"b"}}, []string{"c"}, []string{"a", "b", "c"}},
		{map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}, []string{"d"}, []string{"a", "b", "c", "d"}},
		{map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}, []string{"d", "d", "d"}, []string{"a", "b", "c", "d", "d", "d"}},
		{map[string][]string{"d": {"b", "a", "a", "b"}}, []string{"d"}, []string{"b", "a", "d"}},
	} {
		got := prerequisiteOrder(tc.src, func(n string) []string { return tc.deps[n] })
		if !reflect.DeepEqual(got, tc.out) {
			t.Errorf("%v with %v: %v, want %v", tc.src, tc.deps, got, tc.out)
		}
	}
}

// commandProject is a project exercising commands.rst and volumes.rst.
const commandProject = `
containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Text {/etc/environment: "FROM_FILE=file\nLAYER=file\n"}
    - !EnsureDir /var/lib/pg
    - !EnsureDir /srv/data
    - !EnsureDir /mnt
    - !EnsureDir /opt
    environ-file: /etc/environment
    environ: {LAYER: container, CONTAINER: c}
    volumes:
      /tmp: !Tmpfs
      /srv/data: !Snapshot {container: data}
  bash:
    setup:
    - !Container c
    default-shell: [/bin/sh, -c, $cmdline, via-default-shell]
  data:
    setup:
    - !EnsureDir /srv/data
    - !Text {/srv/data/seed: "seeded"}
commands:
  make: !Command {container: c, run: "echo make >> /work/log"}
  test: !Command
    container: c
    prerequisites: [make, lint]
    run: "echo test >> /work/log"
  lint: !Command {container: c, run: "echo lint >> /work/log", prerequisites: [make]}
  env: !Command
    container: c
    environ: {LAYER: command}
    run: 'echo $FROM_FILE $LAYER $CONTAINER $EXTRA; pwd'
  shell: !Command {container: c, run: 'echo "[$0]" "$@"'}
  shell-args: !Command {container: c, run: 'echo "$@"', accepts-arguments: true}
  list: !Command {container: c, run: [echo, list]}
  dflt: !Command {container: bash, run: 'echo "$0"'}
  workdir: !Command {container: c, run: pwd, work-dir: sub}
  as-user: !Command
    container: c
    user-id: 1
    group-id: 2
    supplementary-gids: [3]
    run: 'id -u; id -g; id -G; touch /tmp/mine && echo tmp-writable'
  opts: !Command
    container: c
    aliases: [o]
    description: Show options
    options: |
      Usage: vagga opts [options] [<tests>...]

      Options:
        -R, --redis-port <n>  Port [default: 6379]
    run: 'echo "$VAGGAOPT_REDIS_PORT|$VAGGAOPT_TESTS|$VAGGACLI_TESTS|$#"'
  vols: !Command
    container: c
    volumes:
      /var/lib/pg: !Persistent {name: pg, owner-uid: 1, owner-gid: 1, init-command: _init-pg}
      /root: !CacheDir my-cache
      /opt: !Empty
      /mnt: !Container data
    run: |
      cat /var/lib/pg/made-by-init; stat -c '%u:%g' /var/lib/pg
      echo $(date +%N) > /root/cached; ls -A /opt | wc -l; cat /mnt/srv/data/seed
      cat /srv/data/seed; echo changed > /srv/data/seed
  _init-pg: !Command
    container: c
    volumes:
      /var/lib/pg: !Persistent {name: pg, owner-uid: 1, owner-gid: 1, init-command: _init-pg}
    run: "echo init >> /work/log; echo initialized > /var/lib/pg/made-by-init"
  banner: !Command {container: c, run: "echo running", banner: "the banner", epilog: "the epilog\n"}
  isolated: !Command {container: c, run: "grep -c : /proc/net/dev", isolate-network: true}
  net: !Command {container: c, run: "grep -c : /proc/net/dev"}
  fail: !Command {container: c, run: "exit 3", epilog: "not printed\n"}
  run: !Supervise
    children:
      quick: !Command {container: c, run: "echo quick; exit 4", tags: [fast]}
      slow: !Command {container: c, run: "sleep 30; echo never", tags: [slow]}
  all: !Supervise
    mode: wait-all-successful
    children:
      a: !Command {container: c, run: "echo a >> /work/sup"}
      b: !Command {container: c, run: "echo b >> /work/sup"}
`

func commandTestBuilder(t *testing.T) (*Builder, string, *bytes.Buffer) {
	t.Helper()
	testutil.RequireRoot(t)
	dir := project(t, commandProject, nil)
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	var build bytes.Buffer
	return New(load(t, dir), runOpts(decision(t, backend.Native), dir, &build)), dir, &build
}

// runCmd runs command name with args; it returns stdout and the status.
func runCmd(t *testing.T, b *Builder, dir, name string, o CommandOptions) (string, int, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	o.Stdout, o.Stderr = &stdout, &stderr
	if o.Cwd == "" {
		o.Cwd = dir
	}
	code, err := b.RunCommand(context.Background(), name, o)
	if err != nil && testing.Verbose() {
		t.Logf("%s: %v\nstderr: %s", name, err, stderr.String())
	}
	return stdout.String(), code, err
}

func TestCommandsAsVaggaDocuments(t *testing.T) {
	b, dir, build := commandTestBuilder(t)
	out := func(name string, o CommandOptions) string {
		t.Helper()
		s, code, err := runCmd(t, b, dir, name, o)
		if err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v\nbuild output: %s", name, code, err, build.String())
		}
		return s
	}
	// Prerequisites run first, each once, in vagga's order.
	out("test", CommandOptions{})
	if log, _ := os.ReadFile(filepath.Join(dir, "log")); string(log) != "make\nlint\ntest\n" {
		t.Errorf("prerequisites ran as %q, want make, lint, test", log)
	}
	os.Remove(filepath.Join(dir, "log"))
	out("test", CommandOptions{NoPrerequisites: true})
	if log, _ := os.ReadFile(filepath.Join(dir, "log")); string(log) != "test\n" {
		t.Errorf("--no-prerequisites ran %q", log)
	}
	// environ-file < container environ < command environ < -E; the
	// working directory is the current directory's place under /work.
	if got := out("env", CommandOptions{Env: []string{"EXTRA=cli"}, Cwd: filepath.Join(dir, "sub")}); got != "file command c cli\n/work/sub\n" {
		t.Errorf("env printed %q", got)
	}
	if got := out("workdir", CommandOptions{}); got != "/work/sub\n" {
		t.Errorf("work-dir: %q", got)
	}
	// A run: string takes no arguments unless accepts-arguments; then
	// they are $1..., with $0 "--" as in vagga's /bin/sh -c CMD --.
	if got := out("shell", CommandOptions{}); got != "[--]\n" {
		t.Errorf("shell: %q", got)
	}
	_, code, err := runCmd(t, b, dir, "shell", CommandOptions{Args: []string{"x"}})
	var ae *ArgsError
	if !errors.As(err, &ae) || ae.Code != ExitBadArguments || code != 0 && code != ExitBadArguments {
		t.Errorf("shell with an argument: %d, %v; want refused with 122", code, err)
	}
	if got := out("shell-args", CommandOptions{Args: []string{"a", "b c"}}); got != "a b c\n" {
		t.Errorf("accepts-arguments: %q", got)
	}
	if got := out("list", CommandOptions{Args: []string{"more"}}); got != "list more\n" {
		t.Errorf("run: list with arguments: %q", got)
	}
	if got := out("dflt", CommandOptions{}); got != "via-default-shell\n" {
		t.Errorf("default-shell: %q", got)
	}
	// user-id, group-id, supplementary-gids; the default !Tmpfs /tmp is
	// 0o1777, so that user can write it.
	if got := out("as-user", CommandOptions{}); got != "1\n2\n2 3\ntmp-writable\n" {
		t.Errorf("as-user: %q", got)
	}
	// options: docopt, its values in VAGGAOPT_*/VAGGACLI_*, the
	// arguments not passed on; an alias runs the command.
	if got := out("o", CommandOptions{Args: []string{"-R", "7", "a", "b c"}}); got != "7|a b c| a 'b c'|0\n" {
		t.Errorf("options: %q", got)
	}
	_, _, err = runCmd(t, b, dir, "opts", CommandOptions{Args: []string{"--bad"}})
	if !errors.As(err, &ae) || ae.Code != ExitBadOptions || !strings.Contains(ae.Msg, "Unknown flag: '--bad'\nUsage: vagga opts [options] [<tests>...]") {
		t.Errorf("bad option: %v", err)
	}
	_, _, err = runCmd(t, b, dir, "opts", CommandOptions{Args: []string{"--help"}})
	if !errors.As(err, &ae) || ae.Code != 0 || !strings.HasPrefix(ae.Msg, "Show options\n\nUsage: vagga opts") {
		t.Errorf("--help: %v", err)
	}
	// Volumes: a persistent volume made by its init-command (run first,
	// once), owned as it says; a cache kept between runs; !Empty; a
	// container's root; a snapshot of another container's directory at
	// the same path, writable, fresh at each run.
	os.Remove(filepath.Join(dir, "log"))
	want := "initialized\n1:1\n0\nseededseeded" // the seed has no newline
	if got := out("vols", CommandOptions{}); got != want {
		t.Errorf("vols: %q, want %q", got, want)
	}
	if got := out("vols", CommandOptions{}); got != want {
		t.Errorf("vols again: %q, want %q", got, want)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "log")); string(log) != "init\n" {
		t.Errorf("the init-command ran %q times, want once", log)
	}
	if _, err := os.Stat(filepath.Join(dir, ".vagga", ".cache", "my-cache", "cached")); err != nil {
		t.Errorf("!CacheDir: %v", err)
	}
	if got := out("banner", CommandOptions{}); got != "the banner\nrunning\nthe epilog\n" {
		t.Errorf("banner and epilog: %q", got)
	}
	// isolate-network, and --isolate-network for any command: only lo.
	if got := out("isolated", CommandOptions{}); got != "1\n" {
		t.Errorf("isolate-network: %q network devices, want 1 (lo)", got)
	}
	if got := out("net", CommandOptions{IsolateNetwork: true}); got != "1\n" {
		t.Errorf("--isolate-network: %q network devices, want 1 (lo)", got)
	}
	if got := out("net", CommandOptions{}); got == "1\n" {
		t.Errorf("without isolation the command sees only lo: the host has no other device?")
	}
	if got, code, err := runCmd(t, b, dir, "fail", CommandOptions{}); code != 3 || err != nil || got != "" {
		t.Errorf("fail: %q, %d, %v", got, code, err)
	}
	// !Supervise: stop-on-failure ends with the first exit's status and
	// stops the others; wait-all-successful runs all.
	if got, code, _ := runCmd(t, b, dir, "run", CommandOptions{}); code != 4 || got != "quick\n" {
		t.Errorf("supervise stop-on-failure: %q, %d; want quick's 4, slow stopped", got, code)
	}
	if got, code, _ := runCmd(t, b, dir, "run", CommandOptions{Args: []string{"--exclude", "slow"}}); code != 4 || got != "quick\n" {
		t.Errorf("--exclude slow: %q, %d", got, code)
	}
	if got, code, _ := runCmd(t, b, dir, "run", CommandOptions{Args: []string{"--only", "fast"}}); code != 4 || got != "quick\n" {
		t.Errorf("--only fast (quick's tag): %q, %d", got, code)
	}
	if _, code, _ := runCmd(t, b, dir, "all", CommandOptions{}); code != 0 {
		t.Errorf("wait-all-successful: %d", code)
	}
	if sup, _ := os.ReadFile(filepath.Join(dir, "sup")); len(sup) != 4 {
		t.Errorf("both children ran: %q", sup)
	}
}

// TestNoBuildAndVersionHash: --no-build refuses a stale container with
// 29; the version hash is the key of the container as it stands, built
// or not.
func TestNoBuildAndVersionHash(t *testing.T) {
	b, dir, _ := commandTestBuilder(t)
	h1, err := b.VersionHash("c")
	if err != nil {
		t.Fatal(err)
	}
	if _, code, err := runCmd(t, b, dir, "list", CommandOptions{NoBuild: true}); code != ExitStale || err == nil {
		t.Errorf("--no-build of an unbuilt container: %d, %v", code, err)
	}
	if _, code, err := runCmd(t, b, dir, "list", CommandOptions{}); code != 0 || err != nil {
		t.Fatalf("list: %d, %v", code, err)
	}
	if _, code, err := runCmd(t, b, dir, "list", CommandOptions{NoBuild: true}); code != 0 || err != nil {
		t.Errorf("--no-build of a fresh container: %d, %v", code, err)
	}
	r, err := b.Build(context.Background(), "c")
	if err != nil || r.Key != h1 {
		t.Errorf("version hash %s before the build, key %s after (%v)", h1, r.Key, err)
	}
}

// TestBuildStepsRunAsCacheDirsBuild: !RunAs runs its script as the
// user it names; !CacheDirs keeps a directory between builds and leaves
// it empty in the container; !Build copies from another container's
// root, or mounts it for the steps after it.
func TestBuildStepsRunAsCacheDirsBuild(t *testing.T) {
	testutil.RequireRoot(t)
	dir := project(t, `
containers:
  pkg:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh "mkdir -p /packages/sub && echo pkg > /packages/sub/p && chmod 640 /packages/sub/p"
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !RunAs {user-id: 1, group-id: 2, script: "id -u > /tmp/id; id -g >> /tmp/id; pwd >> /tmp/id"}
    - !Sh "cp /tmp/id /etc/runas"
    - !RunAs {isolate-network: true, script: "grep -c : /proc/net/dev > /tmp/net"}
    - !Sh "cp /tmp/net /etc/runas-net"
    - !CacheDirs {/var/cache/dl: downloads}
    - !Sh "echo x >> /var/cache/dl/count; wc -l < /var/cache/dl/count > /etc/count"
    - !Build {container: pkg, source: /packages, path: /srv/pkg}
    - !Build {container: pkg, source: /, path: /srv/only, rules: [/packages/sub/]}
    - !Build {container: pkg, source: /packages, temporary-mount: /mnt}
    - !Sh "cat /mnt/sub/p > /etc/mounted"
`, nil)
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	var out bytes.Buffer
	r, _, err := buildOnce(t, dir, "c", runOpts(decision(t, backend.Native), dir, &out))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	mustContain(t, r.Root, "etc/runas", "1\n2\n/work\n")
	mustContain(t, r.Root, "etc/runas-net", "1\n")
	mustContain(t, r.Root, "etc/count", "1\n")
	mustContain(t, r.Root, "srv/pkg/sub/p", "pkg\n")
	if got := strings.Join(listTree(t, filepath.Join(r.Root, "srv/only")), " "); got != "packages packages/sub packages/sub/p" {
		t.Errorf("!Build rules [/packages/sub/] took %q", got)
	}
	mustContain(t, r.Root, "etc/mounted", "pkg\n")
	if names := listTree(t, filepath.Join(r.Root, "var/cache/dl")); len(names) != 0 {
		t.Errorf("the cache's files are in the container: %v", names)
	}
	if names := listTree(t, filepath.Join(r.Root, "mnt")); len(names) != 0 {
		t.Errorf("the temporary mount's files are in the container: %v", names)
	}
	if st := statT(t, filepath.Join(r.Root, "srv/pkg/sub/p")); st.Mode&0o777 != 0o640 || st.Mtim.Sec != 1 {
		t.Errorf("!Build copy: mode %o mtime %d, want the source's mode and mtime 1", st.Mode&0o777, st.Mtim.Sec)
	}
	// The cache survives a rebuild of the step.
	r2, _, err := buildOnce(t, dir, "c", Options{Force: true, Decision: decision(t, backend.Native), Run: RunnerFunc(decision(t, backend.Native), dir), Output: &out})
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out.String())
	}
	mustContain(t, r2.Root, "etc/count", "2\n")
}

// TestAutoCleanAndVolumeCleans: auto-clean leaves only the container's
// newest root (container_params.rst); _clean --unused-volumes removes
// the persistent volumes the config no longer names, --volumes all.
func TestAutoCleanAndVolumeCleans(t *testing.T) {
	yaml := "containers:\n  a:\n    auto-clean: true\n    setup:\n    - !Text {/etc/v: \"1\"}\n  b:\n    setup:\n    - !Text {/etc/v: \"1\"}\n"
	dir := project(t, yaml, nil)
	first := map[string]*Result{}
	for _, n := range []string{"a", "b"} {
		first[n], _ = mustBuild(t, dir, n, Options{})
	}
	writeProject(t, dir, strings.ReplaceAll(yaml, `"1"`, `"2"`), nil)
	for _, n := range []string{"a", "b"} {
		mustBuild(t, dir, n, Options{})
	}
	roots, _ := filepath.Glob(filepath.Join(dir, ".vagga", ".roots", "a.*"))
	if len(roots) != 1 {
		t.Errorf("auto-clean: roots of a %v, want only the new one", roots)
	}
	if _, err := os.Stat(first["b"].Root); err != nil {
		t.Errorf("without auto-clean the old root must stay: %v", err)
	}

	for _, v := range []string{"used", "gone"} {
		if err := os.MkdirAll(filepath.Join(dir, ".vagga", ".volumes", v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeProject(t, dir, yaml+"    volumes:\n      /v: !Persistent used\n", nil)
	b := New(load(t, dir), Options{})
	removed, err := b.CleanVolumes(true, false)
	if err != nil || len(removed) != 1 || filepath.Base(removed[0].Path) != "gone" {
		t.Errorf("--unused-volumes removed %v, %v; want gone", removed, err)
	}
	removed, err = b.CleanVolumes(false, false)
	if err != nil || len(removed) != 1 || filepath.Base(removed[0].Path) != "used" {
		t.Errorf("--volumes removed %v, %v; want used", removed, err)
	}
}

// TestTarOptions: !Tar's path, subdir and sha256 (build_steps.rst).
func TestTarOptions(t *testing.T) {
	dir := project(t, "", nil)
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	data, err := os.ReadFile(filepath.Join(dir, "base.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	good := hex.EncodeToString(sum[:])
	writeProject(t, dir, "containers:\n  c:\n    setup:\n    - !EnsureDir /opt\n    - !Tar {url: ./base.tar.gz, path: /opt/bb, subdir: bin, sha256: "+good+"}\n", nil)
	r, _ := mustBuild(t, dir, "c", Options{})
	mustContain(t, r.Root, "opt/bb/busybox", "")
	mustBeGone(t, r.Root, "opt/bb/bin", "opt/bb/etc", "bin")
	writeProject(t, dir, "containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz, sha256: "+strings.Repeat("0", 64)+"}\n", nil)
	if _, _, err := buildOnce(t, dir, "c", Options{}); err == nil || !strings.Contains(err.Error(), "has sha256 "+good) {
		t.Errorf("a wrong sha256: %v", err)
	}
}

// TestInotifyLimitWarning: expect-inotify-limit warns when the system's
// fs.inotify.max_user_watches is lower.
func TestInotifyLimitWarning(t *testing.T) {
	var logged bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	defer slog.SetDefault(old)
	checkInotifyLimit(&vagga.Command{Name: "watch", InotifyLimit: 1 << 30})
	if !strings.Contains(logged.String(), `command \"watch\" expects fs.inotify.max_user_watches of at least 1073741824`) {
		t.Errorf("logged %q", logged.String())
	}
	logged.Reset()
	checkInotifyLimit(&vagga.Command{Name: "watch", InotifyLimit: 1})
	if logged.Len() != 0 {
		t.Errorf("a limit the system has logged %q", logged.String())
	}
}
