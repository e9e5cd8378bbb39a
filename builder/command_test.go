package builder

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/vagga"
)

func TestCommandRunConfig(t *testing.T) {
	yaml := `
containers:
  src:
    setup: [!Tar {url: ./base.tar.gz}]
  c:
    setup: [!Tar {url: ./base.tar.gz}]
    environ: {A: container, B: container}
    volumes:
      /etc: !Snapshot {size: 1Mi, owner-uid: 1, owner-gid: 2}
      /tmp: !Tmpfs {size: 10Mi}
      /var: !Snapshot {container: src}
commands:
  list: !Command
    container: c
    run: [ls, -l]
    environ: {B: command}
    volumes:
      /tmp: !BindRO /work/data
  script: !Command
    container: c
    run: echo "$@"
    write-mode: transient-hard-link-copy
    work-dir: sub
`
	dir := project(t, yaml, map[string]string{"data/x": "x"})
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	b := New(load(t, dir), Options{})
	rc, err := b.CommandRun(context.Background(), "list", []string{"/etc"}, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	src, _ := b.Build(context.Background(), "src")
	c, _ := b.Build(context.Background(), "c")
	want := runner.Config{
		Layers: []string{c.Root}, Env: []string{"A=container", "B=command"}, BindWork: dir, Workdir: "/work/data",
		Args: []string{"ls", "-l", "/etc"}, Name: "c", TransientDir: filepath.Join(dir, ".vagga", ".transient"),
		Volumes: []runner.Volume{
			{Path: "/etc", Kind: runner.Snapshot, Size: 1 << 20, UID: 1, GID: 2},
			// The command's /tmp replaces the container's.
			{Path: "/tmp", Kind: runner.Bind, HostDir: filepath.Join(dir, "data"), ReadOnly: true, UID: -1, GID: -1},
			// The other container's directory at the same path.
			{Path: "/var", Kind: runner.Snapshot, From: filepath.Join(src.Root, "var"), UID: -1, GID: -1},
		},
		HostFiles: []runner.HostFile{{Src: "/etc/resolv.conf", Dst: "/etc/resolv.conf"}, {Src: "/etc/hosts", Dst: "/etc/hosts"}},
	}
	if !reflect.DeepEqual(rc, want) {
		t.Errorf("list:\n got %+v\nwant %+v", rc, want)
	}
	rc, err = b.CommandRun(context.Background(), "script", []string{"a", "b"}, "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Writable || rc.Workdir != "/work/sub" || !reflect.DeepEqual(rc.Args, []string{"/bin/sh", "-c", `echo "$@"`, "--", "a", "b"}) {
		t.Errorf("script: writable %v, workdir %s, args %q", rc.Writable, rc.Workdir, rc.Args)
	}
	if _, err := b.CommandRun(context.Background(), "nope", nil, ""); err == nil || !strings.Contains(err.Error(), "it has: list, script") {
		t.Errorf("unknown command: %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := project(t, "containers:\n  c:\n    setup: [!Tar {url: ./base.tar.gz}]\n", nil)
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	for _, tc := range []struct {
		from, arg string
		want      bool
	}{
		{dir, "c", true},
		{filepath.Join(dir, "sub"), "c", true}, // vagga.yaml in a parent
		{dir, "./c", false},
		{dir, "other", false},
		{dir, "sub", false}, // an existing directory is a path
		{t.TempDir(), "c", false},
	} {
		b, ok, err := Resolve(tc.from, tc.arg, Options{}, nil)
		if err != nil || ok != tc.want || ok && b == nil {
			t.Errorf("Resolve(%s, %q) = %v, %v, %v; want %v", tc.from, tc.arg, b, ok, err, tc.want)
		}
	}
}

// TestExampleProject builds the committed example project (examples/)
// and runs each of its commands, on every backend, as root and as uid
// 65534: what `make demo` shows.
func TestExampleProject(t *testing.T) {
	t.Parallel() // beside the package's other long tests
	testAsRootAndNobody(t, func(t *testing.T) {
		for _, be := range backends(t) {
			t.Run(be.Backend, func(t *testing.T) {
				dir := testutilCopyExamples(t)
				testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
				var out bytes.Buffer
				cfg, err := vagga.Load(filepath.Join(dir, "vagga.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				b := New(cfg, runOpts(be, dir, &out))
				run := func(name string) string {
					t.Helper()
					rc, err := b.CommandRun(context.Background(), name, nil, dir)
					if err != nil {
						t.Fatalf("%s: %v\n%s", name, err, out.String())
					}
					var stdout, stderr bytes.Buffer
					rc.Decision, rc.Stdout, rc.Stderr = be, &stdout, &stderr
					res, err := runner.Run(context.Background(), rc)
					if err != nil || res.ExitCode != 0 {
						t.Fatalf("%s: %v, exit %d\n%s", name, err, res.ExitCode, stderr.String())
					}
					return stdout.String()
				}
				hello := "hello from the base container; APP_MODE=demo; running in /work as uid 0\n"
				if got := run("hello"); got != hello {
					t.Errorf("hello printed %q, want %q", got, hello)
				}
				snap := "motd before: hello from the base container\nmotd now:    changed by this run\n"
				for i := 0; i < 2; i++ {
					if got := run("snapshot"); got != snap {
						t.Errorf("snapshot run %d printed %q, want %q", i+1, got, snap)
					}
				}
				if got := run("scratch"); got != "removed /opt/app for this run only; /opt has: []\n" {
					t.Errorf("scratch printed %q", got)
				}
				if got := run("hello"); got != hello {
					t.Errorf("after scratch, hello printed %q", got)
				}
			})
		}
	})
}

// testutilCopyExamples copies examples/ to a fresh shared directory.
func testutilCopyExamples(t *testing.T) string {
	t.Helper()
	src := repoPath(t, "examples")
	dir := project(t, "", nil)
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if strings.HasPrefix(rel, ".vagga") || rel == "base.tar.gz" {
			return filepath.SkipDir
		}
		dst := filepath.Join(dir, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
