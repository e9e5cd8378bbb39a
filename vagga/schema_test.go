package vagga

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t *testing.T, y string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(y), "/p/vagga.yaml", "/p")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBareTagsTakeDefaults: volumes.rst's own example, `/var/lib/mysql:
// !Snapshot`, and a bare !Tmpfs, take vagga's defaults (size 100Mi,
// owner kept; mode 0o1777).
func TestBareTagsTakeDefaults(t *testing.T) {
	cfg := mustParse(t, "containers:\n  a:\n    volumes:\n      /var/lib/mysql: !Snapshot\n      /tmp: !Tmpfs\n      /hide: !Empty\n")
	v := cfg.Containers["a"].Volumes
	if len(v) != 3 {
		t.Fatalf("volumes %+v", v)
	}
	hide, tmp, mysql := v[0], v[1], v[2]
	if mysql.Kind != VolumeSnapshot || mysql.Size != 0 || mysql.UID != -1 || mysql.GID != -1 || mysql.Container != "" {
		t.Errorf("bare !Snapshot = %+v", mysql)
	}
	if tmp.Kind != VolumeTmpfs || tmp.Mode != 0o1777 || tmp.Size != 0 {
		t.Errorf("bare !Tmpfs = %+v", tmp)
	}
	if hide.Kind != VolumeEmpty {
		t.Errorf("!Empty = %+v", hide)
	}
}

// TestVolumeSchema reads every volume of volumes.rst with its options.
func TestVolumeSchema(t *testing.T) {
	cfg := mustParse(t, `
containers:
  app: {}
  a:
    volumes:
      /var: !Tmpfs
        mode: 0o766
        size: 2Mi
        subdirs:
          lib: # default mode
          lib/tmp: { mode: 0o1777 }
          lib/postgres: { mode: 0o700 }
        files:
          run/x: "text"
          empty:
      /srv/pg: !Persistent { name: "postgres", owner-uid: 70, owner-gid: 71, init-command: _init }
      /srv/short: !Persistent "short"
      /root/.m2: !CacheDir maven-cache
      /mnt: !Container app
      /etc: !Snapshot { size: 1k, owner-uid: 0, owner-gid: 5, container: app }
commands:
  _init: !Command {container: a, run: "true"}
`)
	v := map[string]Volume{}
	for _, x := range cfg.Containers["a"].Volumes {
		v[x.Path] = x
	}
	tmp := v["/var"]
	wantDirs := []TmpfsDir{{"lib", 0o755}, {"lib/postgres", 0o700}, {"lib/tmp", 0o1777}}
	wantFiles := []TmpfsFile{{"empty", ""}, {"run/x", "text"}}
	if tmp.Mode != 0o766 || tmp.Size != 2<<20 || !reflect.DeepEqual(tmp.Subdirs, wantDirs) || !reflect.DeepEqual(tmp.Files, wantFiles) {
		t.Errorf("!Tmpfs = %+v", tmp)
	}
	if pg := v["/srv/pg"]; pg.Kind != VolumePersistent || pg.Name != "postgres" || pg.UID != 70 || pg.GID != 71 || pg.InitCommand != "_init" {
		t.Errorf("!Persistent = %+v", pg)
	}
	if s := v["/srv/short"]; s.Kind != VolumePersistent || s.Name != "short" || s.UID != 0 || s.GID != 0 {
		t.Errorf("!Persistent scalar = %+v", s)
	}
	if c := v["/root/.m2"]; c.Kind != VolumeCacheDir || c.Name != "maven-cache" {
		t.Errorf("!CacheDir = %+v", c)
	}
	if c := v["/mnt"]; c.Kind != VolumeContainer || c.Container != "app" {
		t.Errorf("!Container = %+v", c)
	}
	if s := v["/etc"]; s.Size != 1000 || s.UID != 0 || s.GID != 5 || s.Container != "app" {
		t.Errorf("!Snapshot = %+v", s)
	}
	if deps := Dependencies(cfg.Containers["a"]); !reflect.DeepEqual(deps, []string{"app"}) {
		t.Errorf("dependencies %v", deps)
	}
}

// TestUnsupportedBlocksOnlyItsContainer: a step, volume or setting ovl
// cannot do keeps its own container (and what builds on it) from being
// built, not the others; the error names the line.
func TestUnsupportedBlocksOnlyItsContainer(t *testing.T) {
	cfg := mustParse(t, `containers:
  ubuntu:
    setup:
    - !Ubuntu xenial
    - !Sh "true"
  child:
    setup:
    - !Container ubuntu
  net:
    setup:
    - !Tar {url: "https://example.com/x.tar.gz"}
  bin:
    volumes:
      /vagga: !VaggaBin
  cached:
    image-cache-url: http://example.org/${container_name}.${short_hash}.tar.xz
  fine:
    setup:
    - !Sh "true"
commands:
  ok: !Command {container: fine, run: "true"}
  bad: !Command {container: child, run: "true"}
  caps: !CapsuleCommand {run: "true"}
  sock: !Command {container: fine, run: "true", pass-tcp-socket: 8080}
`)
	if err := cfg.Check("fine"); err != nil {
		t.Errorf("fine: %v", err)
	}
	if err := cfg.CheckCommand("ok"); err != nil {
		t.Errorf("ok: %v", err)
	}
	for name, want := range map[string]string{
		"ubuntu": "/p/vagga.yaml:4: step !Ubuntu is not supported by ovl",
		"child":  "/p/vagga.yaml:4: step !Ubuntu",
		"net":    "/p/vagga.yaml:11: !Tar url \"https://example.com/x.tar.gz\" needs the network",
		"bin":    "/p/vagga.yaml:14: volume !VaggaBin",
		"cached": "/p/vagga.yaml:16: image-cache-url",
	} {
		err := cfg.Check(name)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	for name, want := range map[string]string{
		"bad":  "step !Ubuntu",
		"caps": "!CapsuleCommand",
		"sock": "/p/vagga.yaml:24: command \"sock\": pass-tcp-socket",
	} {
		err := cfg.CheckCommand(name)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// TestUnderscoreKeys: as in vagga's config library, keys starting with
// "_" are left out (the gradle example's top-level _default holds
// anchors), and vagga's own spelling with "_" is the documented "-".
func TestUnderscoreKeys(t *testing.T) {
	cfg := mustParse(t, `
_default:
  cmd-opts: &cmd-opts
    container: jdk
    prerequisites: [_mk-cache]
containers:
  jdk:
    _note: ignored
    auto_clean: true
    setup: []
commands:
  _mk-cache: !Command {container: jdk, run: "true"}
  gradle: !Command
    <<: *cmd-opts
    run: [gradle]
`)
	if !cfg.Containers["jdk"].AutoClean {
		t.Error("auto_clean not read as auto-clean")
	}
	g := cfg.Commands["gradle"]
	if g.Container != "jdk" || !reflect.DeepEqual(g.Prerequisites, []string{"_mk-cache"}) {
		t.Errorf("gradle = %+v", g)
	}
}

// TestContainerSettings reads every key of container_params.rst.
func TestContainerSettings(t *testing.T) {
	cfg := mustParse(t, `
containers:
  a:
    environ-file: /etc/environment
    environ: {A: "1"}
    resolv-conf-path: /state/resolv.conf
    hosts-file-path: null
    auto-clean: true
    data-dirs: [/var/lib/postgres, /etc/x]
    default-shell: [/bin/bash, -c, $cmdline, --]
    uids: [0-999]
    gids: [0-999]
  b: {}
`)
	a, b := cfg.Containers["a"], cfg.Containers["b"]
	if a.EnvironFile != "/etc/environment" || a.ResolvConfPath != "/state/resolv.conf" || a.HostsFilePath != "" ||
		!a.AutoClean || !reflect.DeepEqual(a.DataDirs, []string{"/var/lib/postgres", "/etc/x"}) ||
		!reflect.DeepEqual(a.DefaultShell, []string{"/bin/bash", "-c", "$cmdline", "--"}) {
		t.Errorf("a = %+v", a)
	}
	if b.ResolvConfPath != "/etc/resolv.conf" || b.HostsFilePath != "/etc/hosts" || b.DefaultShell != nil || b.AutoClean {
		t.Errorf("b's defaults = %+v", b)
	}
}

// TestCommandSettings reads every key of commands.rst.
func TestCommandSettings(t *testing.T) {
	cfg := mustParse(t, `
containers: {c: {}}
commands:
  test: !Command
    description: Run tests
    banner: starting
    banner-delay: 1
    epilog: done
    aliases: [check, run-tests]
    group: Testing
    prerequisites: [make]
    expect-inotify-limit: 8192
    symlink-name: t
    container: c
    run: [pytest]
    accepts-arguments: false
    work-dir: docs
    user-id: 1
    external-user-id: 0
    group-id: 2
    supplementary-gids: [3, 4]
    pid1mode: wait
    isolate-network: false
    options: |
      Usage: vagga test [options] [<tests>...]
  make: !Command {container: c, run: make}
  run: !Supervise
    mode: wait-all-successful
    kill-unresponsive-after: 5
    children:
      web: !Command {container: c, run: "web", tags: [app]}
      db: !Command {container: c, run: "db", tags: [service]}
`)
	c := cfg.Commands["test"]
	if c.Description != "Run tests" || c.Banner != "starting" || c.BannerDelay != 1 || c.Epilog != "done" ||
		c.Group != "Testing" || c.InotifyLimit != 8192 || c.SymlinkName != "t" || c.WorkDir != "docs" ||
		c.UserID != 1 || c.ExternalUserID != 0 || c.GroupID != 2 || !reflect.DeepEqual(c.SupplementaryGIDs, []int{3, 4}) ||
		c.TakesArguments() || c.Pid1Mode != "wait" || !strings.HasPrefix(c.Options, "Usage: vagga test") {
		t.Errorf("test = %+v", c)
	}
	if got, ok := cfg.LookupCommand("run-tests"); !ok || got != c {
		t.Error("alias run-tests not found")
	}
	if cfg.Commands["make"].ExternalUserID != -1 {
		t.Error("external-user-id's default is unset")
	}
	run := cfg.Commands["run"]
	if run.Kind != KindSupervise || run.Mode != WaitAllSuccessful || run.KillUnresponsiveAfter != 5 ||
		!reflect.DeepEqual(run.ChildNames(), []string{"db", "web"}) || run.Children["web"].Tags[0] != "app" {
		t.Errorf("run = %+v", run)
	}
}

// TestCopyAndDependsOptions reads !Copy's options with their defaults
// and !Depends's mapping form.
func TestCopyAndDependsOptions(t *testing.T) {
	cfg := mustParse(t, `
containers:
  a:
    setup:
    - !Copy {source: /work/src, path: /src}
    - !Copy
      source: /work/pkg
      path: /pkg
      ignore-regex: "(~|.py[co])$"
      include-regex: "\\.py$"
      umask: 0o022
      preserve-permissions: true
      preserve-times: true
    - !Copy {source: /work/x, path: /x, rules: ["!dir", "/dir/*.py"], no-default-rules: true}
    - !Copy {source: /usr/build/out, path: /opt/out}
    - !Depends {path: requirements, include-regex: "\\.txt$"}
    - !Depends req.txt
`)
	steps := cfg.Containers["a"].Setup
	plain := steps[0].(*CopyStep)
	if plain.Umask != 0o002 || plain.PreservePermissions || plain.PreserveTimes || plain.OwnerUID != nil || plain.InContainer || plain.HostSource != "/p/src" {
		t.Errorf("plain !Copy = %+v", plain)
	}
	full := steps[1].(*CopyStep)
	if full.Umask != 0o022 || !full.PreservePermissions || !full.PreserveTimes || *full.Filter.IgnoreRegex != "(~|.py[co])$" || *full.Filter.IncludeRegex != `\.py$` {
		t.Errorf("!Copy with options = %+v", full)
	}
	rules := steps[2].(*CopyStep)
	if !reflect.DeepEqual(rules.Filter.Rules, []string{"!dir", "/dir/*.py"}) || !rules.Filter.NoDefaultRules {
		t.Errorf("!Copy rules = %+v", rules.Filter)
	}
	inside := steps[3].(*CopyStep)
	if !inside.InContainer || inside.Source != "/usr/build/out" || inside.HostSource != "" || inside.HostPaths() != nil {
		t.Errorf("!Copy of a container path = %+v", inside)
	}
	dep := steps[4].(*DependsStep)
	if dep.HostPath != "/p/requirements" || *dep.Filter.IncludeRegex != `\.txt$` {
		t.Errorf("!Depends mapping = %+v", dep)
	}
	if d := steps[5].(*DependsStep); d.HostPath != "/p/req.txt" {
		t.Errorf("!Depends = %+v", d)
	}
}

// TestMinimumVagga accepts versions up to the one ovl reads as.
func TestMinimumVagga(t *testing.T) {
	for _, v := range []string{"v0.5.0", "v0.8.1", "0.8.0-12-gabcdef"} {
		if _, err := Parse([]byte("minimum-vagga: "+v+"\n"), "v", "/p"); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFindAndMixins: the files that mark a project (commandline.rst) and
// how mixins merge (config_overview.rst): vagga.yaml wins over every
// mixin, a later mixin over an earlier one, local mixins over mixins:;
// a missing mixin is skipped.
func TestFindAndMixins(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"vagga.yaml": `mixins: [m1.yaml, m2.yaml, missing.yaml, ../escape.yaml]
containers:
  own: {environ: {FROM: vagga.yaml}}
commands:
  own: !Command {container: own, run: "true", description: main}
`,
		"m1.yaml": `containers:
  own: {environ: {FROM: m1}}
  shared: {environ: {FROM: m1}}
  only1: {}
mixins: [sub/m3.yaml]
`,
		"m2.yaml":           "containers:\n  shared: {environ: {FROM: m2}}\n",
		"sub/m3.yaml":       "containers:\n  only3: {}\n",
		"vagga.local.yaml":  "containers:\n  shared: {environ: {FROM: local}}\ncommands:\n  own: !Command {container: own, run: \"false\", description: local}\n  extra: !Command {container: own, run: \"true\"}\n",
		"sub/dir/.keep":     "",
		"other/.vagga/x":    "",
		"other/.vagga.yaml": "not a project marker",
	})
	found, err := Find(filepath.Join(dir, "sub", "dir"))
	if err != nil || found != filepath.Join(dir, "vagga.yaml") {
		t.Fatalf("Find = %q, %v", found, err)
	}
	cfg, err := Load(found)
	if err != nil {
		t.Fatal(err)
	}
	from := func(name string) string { return cfg.Containers[name].Environ[0].Value }
	if from("own") != "vagga.yaml" || from("shared") != "local" {
		t.Errorf("own from %s, shared from %s", from("own"), from("shared"))
	}
	for _, name := range []string{"only1", "only3"} {
		if _, ok := cfg.Containers[name]; !ok {
			t.Errorf("container %s of a mixin missing", name)
		}
	}
	if cfg.Commands["own"].Description != "main" || cfg.Commands["extra"] == nil {
		t.Errorf("commands: own %q, extra %v", cfg.Commands["own"].Description, cfg.Commands["extra"])
	}

	// .vagga/vagga.yaml marks the project too, and comes first.
	hidden := t.TempDir()
	writeFiles(t, hidden, map[string]string{".vagga/vagga.yaml": "containers: {h: {}}\n", "x/.keep": ""})
	found, err = Find(filepath.Join(hidden, "x"))
	if err != nil || found != filepath.Join(hidden, ".vagga", "vagga.yaml") {
		t.Fatalf("Find = %q, %v", found, err)
	}
	if cfg, err := Load(found); err != nil || cfg.Dir != hidden || cfg.Containers["h"] == nil {
		t.Errorf("Load(.vagga/vagga.yaml): dir %v, %v", cfg, err)
	}

	// A local mixin alone makes a project.
	local := t.TempDir()
	writeFiles(t, local, map[string]string{".vagga/local.yaml": "containers: {l: {}}\n"})
	found, err = Find(local)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := Load(found); err != nil || cfg.Containers["l"] == nil {
		t.Errorf("project of a local mixin: %v, %v", cfg, err)
	}
}

// TestIncludeAndUnpack: the two tags of vagga's config library: a node
// !*Include FILE is FILE's document, relative to the including file, and
// its errors name it; !*Unpack [[...], [...]] joins lists.
func TestIncludeAndUnpack(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"vagga.yaml": `_steps: &common [!EnsureDir /a]
containers:
  c:
    setup:
    - !*Unpack [*common, [!EnsureDir /b]]
    - !*Include inc/step.yaml
  more: !*Include inc/container.yaml
`,
		"inc/step.yaml":      "!EnsureDir /c\n",
		"inc/container.yaml": "setup:\n- !EnsureDir /d\n- !Frobnicate x\n",
	})
	_, err := Load(filepath.Join(dir, "vagga.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "inc/container.yaml")+":3: ") {
		t.Fatalf("an error in an included file: %v, want it named at line 3", err)
	}
	writeFiles(t, dir, map[string]string{"inc/container.yaml": "setup:\n- !EnsureDir /d\n"})
	cfg, err := Load(filepath.Join(dir, "vagga.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range cfg.Containers["c"].Setup {
		paths = append(paths, s.(*EnsureDirStep).Path)
	}
	if strings.Join(paths, " ") != "/a /b /c" {
		t.Errorf("c's steps: %v", paths)
	}
	if s := cfg.Containers["more"].Setup; len(s) != 1 || s[0].Position().File != filepath.Join(dir, "inc/container.yaml") {
		t.Errorf("more's steps %v", s)
	}
	writeFiles(t, dir, map[string]string{"vagga.yaml": "containers: !*Include ../x.yaml\n"})
	if _, err := Load(filepath.Join(dir, "vagga.yaml")); err == nil || !strings.Contains(err.Error(), "only relative paths") {
		t.Errorf("an include out of the directory: %v", err)
	}
}
