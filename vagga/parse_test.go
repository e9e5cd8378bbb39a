package vagga

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/idmap"
)

const full = `
containers:
  base:
    setup:
    - !Tar {url: ./base.tar.gz, path: /, subdir: rootfs}
    - !Env {LANG: C.UTF-8, A: "1"}
    - !Sh "echo hi > /etc/hi"
    - !Cmd [make, -C, /work, install]
    - !Text
      /etc/motd: hello
      /etc/a.conf: |
        x = 1
    - !Copy {source: /work/src, path: /opt/src, owner-uid: 1000, owner-gid: 100}
    - !Remove /var/cache
    - !EnsureDir /var/lib/app
    - !EmptyDir /tmp
    - !Depends requirements.txt
    environ: {HOME: /root}
    volumes:
      /etc: !Snapshot {size: 1Mi, owner-uid: 0, owner-gid: 0, container: base}
      /tmp: !Tmpfs {size: 100M, mode: 0o1777}
      /data: !BindRW /work/data
      /ro: !BindRO /work/ro
  child:
    setup:
    - !Container base
    - !Sh "true"
commands:
  hello: !Command
    container: child
    run: echo hello
    write-mode: transient-hard-link-copy
    environ: {X: y}
  argv: !Command
    container: base
    run: [ls, -l]
`

func TestParseEveryStep(t *testing.T) {
	cfg, err := Parse([]byte(full), "/p/vagga.yaml", "/p")
	if err != nil {
		t.Fatal(err)
	}
	base := cfg.Containers["base"]
	if len(base.Setup) != 10 {
		t.Fatalf("base has %d steps, want 10", len(base.Setup))
	}
	want := []Step{
		&TarStep{URL: "./base.tar.gz", Path: "/", Subdir: "rootfs", HostFile: "/p/base.tar.gz"},
		&EnvStep{Vars: []EnvVar{{"A", "1"}, {"LANG", "C.UTF-8"}}},
		&ShStep{Script: "echo hi > /etc/hi"},
		&CmdStep{Args: []string{"make", "-C", "/work", "install"}},
		&TextStep{Files: []TextFile{{"/etc/a.conf", "x = 1\n"}, {"/etc/motd", "hello"}}},
		&CopyStep{Source: "/work/src", Path: "/opt/src", OwnerUID: intp(1000), OwnerGID: intp(100), Umask: 0o002, HostSource: "/p/src"},
		&RemoveStep{Path: "/var/cache"},
		&EnsureDirStep{Path: "/var/lib/app"},
		&EmptyDirStep{Path: "/tmp"},
		&DependsStep{Path: "requirements.txt", HostPath: "/p/requirements.txt"},
	}
	for i, s := range base.Setup {
		if s.Position().Line != 5+i+boolInt(i > 4)*3 {
			t.Errorf("step %d %s at line %d", i, s.Tag(), s.Position().Line)
		}
		clearPos(s)
		if !reflect.DeepEqual(s, want[i]) {
			t.Errorf("step %d = %#v, want %#v", i, s, want[i])
		}
	}
	// In path order: /data, /etc, /ro, /tmp.
	if got := base.Volumes; len(got) != 4 || got[1].Kind != VolumeSnapshot || got[1].Size != 1<<20 || got[1].Container != "base" ||
		got[3].Kind != VolumeTmpfs || got[3].Size != 100e6 || got[3].Mode != 0o1777 ||
		got[0].HostPath != "/p/data" || got[0].ReadOnly || !got[2].ReadOnly {
		t.Errorf("volumes = %+v", got)
	}
	if cfg.Containers["child"].Parent() != "base" {
		t.Errorf("child's parent = %q", cfg.Containers["child"].Parent())
	}
	hello := cfg.Commands["hello"]
	if hello.Script != "echo hello" || !hello.IsShell() || hello.TakesArguments() || hello.WriteMode != TransientCopy || hello.Environ[0].String() != "X=y" {
		t.Errorf("hello = %+v", hello)
	}
	if argv := cfg.Commands["argv"]; !reflect.DeepEqual(argv.Run, []string{"ls", "-l"}) || argv.WriteMode != ReadOnly || !argv.TakesArguments() {
		t.Errorf("argv = %+v", argv)
	}
}

func intp(i int) *int { return &i }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func clearPos(s Step) {
	reflect.ValueOf(s).Elem().FieldByName("Pos").Set(reflect.ValueOf(Pos{}))
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		err        error
		line       int
		want       string
	}{
		{"unknown step", "containers:\n  a:\n    setup:\n    - !Frobnicate x\n", ErrInvalid, 4, "!Frobnicate is not a vagga build step"},
		{"cycle", "containers:\n  a:\n    setup: [!Container b]\n  b:\n    setup: [!Container a]\n", ErrCycle, 2, `Container "a" has cyclic dependency: a -> b -> a`},
		{"self cycle", "containers:\n  a:\n    setup: [!Container a]\n", ErrCycle, 2, "has cyclic dependency"},
		{"snapshot cycle", "containers:\n  a:\n    setup: [!Container b]\n  b:\n    volumes:\n      /x: !Snapshot {container: a}\n", ErrCycle, 2, "has cyclic dependency"},
		{"unknown container", "containers:\n  a:\n    setup:\n    - !Container nope\n", ErrUnknownContainer, 4, `builds on "nope"`},
		{"invalid yaml", "containers:\n  a:\n    setup: [\n  b: 1\n", ErrSyntax, -1, "invalid YAML"},
		{"duplicate key", "containers:\n  a: {}\n  a: {}\n", ErrSyntax, 3, "already defined"},
		{"tab yaml", "containers:\n\ta: 1\n", ErrSyntax, 2, "invalid YAML"},
		{"relative path", "containers:\n  a:\n    setup:\n    - !EnsureDir var/x\n", ErrInvalid, 4, "not absolute"},
		{"escape", "containers:\n  a:\n    setup:\n    - !Copy {source: ../x, path: /x}\n", ErrInvalid, 4, "leaves the project"},
		{"container not first", "containers:\n  b: {}\n  a:\n    setup:\n    - !Sh x\n    - !Container b\n", ErrInvalid, 6, "must be the first step"},
		{"bad size", "containers:\n  a:\n    volumes:\n      /x: !Snapshot {size: lots}\n", ErrInvalid, 4, `size "lots" does not parse`},
		{"bad write mode", "containers:\n  a: {}\ncommands:\n  c: !Command {container: a, run: x, write-mode: rw}\n", ErrInvalid, 4, "write-mode"},
		{"command container", "commands:\n  c: !Command {container: a, run: x}\n", ErrUnknownContainer, 2, "not defined"},
		{"supervise without children", "commands:\n  c: !Supervise {}\n", ErrInvalid, 2, "has no children"},
		{"unknown command kind", "commands:\n  c: !Cmd {}\n", ErrInvalid, 2, `"!Cmd" is not a vagga command`},
		{"unknown volume", "containers:\n  a:\n    volumes:\n      /x: !Ramdisk\n", ErrInvalid, 4, "not a vagga volume"},
		{"rules and regex", "containers:\n  a:\n    setup:\n    - !Copy {source: /work/x, path: /x, rules: [/a], ignore-regex: b}\n", ErrInvalid, 4, "either rules or regular expressions but not both"},
		{"relative include rule", "containers:\n  a:\n    setup:\n    - !Copy {source: /work/x, path: /x, rules: [a]}\n", ErrInvalid, 4, "Relative paths are allowed only for excluding rules"},
		{"bad regex", "containers:\n  a:\n    setup:\n    - !Depends {path: x, include-regex: \"(\"}\n", ErrInvalid, 4, "include-regex"},
		{"newer vagga", "minimum-vagga: v0.9.0\n", ErrUnsupported, 1, `Please upgrade vagga to at least "v0.9.0"`},
		{"bad options", "containers: {a: {}}\ncommands:\n  c: !Command {container: a, run: x, options: \"no usage\"}\n", ErrInvalid, 3, "Error parsing `options`"},
		{"unknown prerequisite", "containers: {a: {}}\ncommands:\n  c: !Command {container: a, run: x, prerequisites: [nope]}\n", ErrInvalid, 3, `prerequisite "nope"`},
		{"empty hides work", "containers:\n  a:\n    volumes:\n      /work: !Empty\n", ErrInvalid, 4, "cannot hide /work"},
		{"tmpfs mode", "containers:\n  a:\n    volumes:\n      /x: !Tmpfs {mode: 0o7777}\n", ErrInvalid, 4, "out of range"},
		{"untagged step", "containers:\n  a:\n    setup:\n    - make\n", ErrInvalid, 4, "needs a tag"},
		{"unknown key", "containers:\n  a:\n    stup: []\n", ErrInvalid, 3, `unknown key "stup"`},
		{"bad uids", "containers:\n  a:\n    uids: [0-10, 9-5]\n", ErrInvalid, 3, `uids: id range "9-5"`},
		{"empty gids", "containers:\n  a:\n    gids: []\n", ErrInvalid, 3, "gids is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "/p/vagga.yaml", "/p")
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var e *Error
			if !errors.As(err, &e) || (e.Pos.Line != tc.line && !(tc.line == -1 && e.Pos.Line > 0)) || e.Pos.File != "/p/vagga.yaml" {
				t.Errorf("err = %v: want at /p/vagga.yaml:%d", err, tc.line)
			}
			prefix := "/p/vagga.yaml:"
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to start with %q and contain %q", err, prefix, tc.want)
			}
		})
	}
}

// TestParseIDRanges reads uids and gids as vagga writes them; a container
// without them maps vagga's default (nil).
func TestParseIDRanges(t *testing.T) {
	cfg, err := Parse([]byte("containers:\n  a:\n    uids: [0-999, 65534]\n    gids: [\"0-65535\"]\n  b: {}\n"), "/p/vagga.yaml", "/p")
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Containers["a"], cfg.Containers["b"]
	if want := []idmap.Range{{First: 0, Last: 999}, {First: 65534, Last: 65534}}; !reflect.DeepEqual(a.UIDs, want) {
		t.Errorf("uids = %v, want %v", a.UIDs, want)
	}
	if want := []idmap.Range{{First: 0, Last: 65535}}; !reflect.DeepEqual(a.GIDs, want) {
		t.Errorf("gids = %v, want %v", a.GIDs, want)
	}
	if b.UIDs != nil || b.GIDs != nil {
		t.Errorf("no uids/gids: %v %v, want nil (the default)", b.UIDs, b.GIDs)
	}
}

func TestParseAnchorsAndMerge(t *testing.T) {
	y := `
_defaults: &vol
  /tmp: !Tmpfs {size: 1Mi}
containers:
  a:
    setup: &steps
    - !Sh "a"
    volumes:
      <<: *vol
      /x: !Tmpfs {}
  b:
    setup: *steps
`
	cfg, err := Parse([]byte(y), "v.yaml", "/p")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Containers["b"].Setup) != 1 || len(cfg.Containers["a"].Volumes) != 2 {
		t.Errorf("a=%+v b=%+v", cfg.Containers["a"], cfg.Containers["b"])
	}
}

func TestCanonicalIgnoresLayout(t *testing.T) {
	a, err := Parse([]byte("containers:\n  a:\n    setup:\n    - !Copy {source: /work/x, path: /y}\n"), "v", "/p")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte("# moved\ncontainers:\n  a:\n    setup:\n\n    - !Copy\n        path: /y\n        source: /work/x\n"), "v", "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := Canonical(a.Containers["a"].Setup[0]), Canonical(b.Containers["a"].Setup[0])
	if string(ca) != string(cb) {
		t.Errorf("canonical forms differ:\n%s\n%s", ca, cb)
	}
	if filepath.Base(b.Containers["a"].Setup[0].(*CopyStep).HostSource) != "x" {
		t.Error("host source not resolved")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"100Mi": 100 << 20, "1G": 1e9, "4096": 4096, "512k": 512000, "2Gi": 2 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.5G", "10Q"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}
