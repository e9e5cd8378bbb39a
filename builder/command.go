package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
	"github.com/ovl-dev/ovl/vagga"
)

// CommandRun builds what command name of the config needs (its container
// and the containers its volumes take contents from), building only
// what is stale, and returns the runner configuration that runs it with
// extra arguments, as vagga runs a !Command: the container's flattened
// root, writable and thrown away for write-mode
// transient-hard-link-copy; the container's and the command's volumes;
// the container's environ-file and environ under the command's; the
// user it runs as; the host's resolv.conf and hosts; the project bound
// at /work. cwd, when inside the project, sets the working directory as
// vagga does (/work/<relative cwd>); the command's work-dir overrides
// it. A run: string runs with the container's default-shell (vagga's
// /bin/sh -c SCRIPT --), extra arguments as $1...; RunCommand checks
// them against accepts-arguments and options first. Backend and stdio
// are the caller's to fill in.
func (b *Builder) CommandRun(ctx context.Context, name string, extra []string, cwd string) (runner.Config, error) {
	cmd, ok := b.cfg.LookupCommand(name)
	if !ok {
		return runner.Config{}, fmt.Errorf("%w %q in %s (it has: %s)", ErrNoCommand, name, b.cfg.File, strings.Join(b.cfg.CommandNames(), ", "))
	}
	if cmd.Kind != vagga.KindCommand {
		return runner.Config{}, fmt.Errorf("command %q is a %s: run it with RunCommand", name, cmd.Kind)
	}
	if err := b.cfg.CheckCommand(name); err != nil {
		return runner.Config{}, err
	}
	rc, _, err := b.commandConfig(ctx, cmd, extra, cwd, nil)
	return rc, err
}

// commandConfig is CommandRun for the !Command cmd (maybe the child of a
// !Supervise), with env added over everything else (vagga's -E, -e and
// VAGGAOPT_ variables). commit, when not nil, must be called after the
// command succeeded: it keeps the persistent volumes cmd initialized.
func (b *Builder) commandConfig(ctx context.Context, cmd *vagga.Command, extra []string, cwd string, env []string) (rc runner.Config, commit func() error, err error) {
	r, err := b.Build(ctx, cmd.Container)
	if err != nil {
		return runner.Config{}, nil, err
	}
	if r.Root == "" {
		return runner.Config{}, nil, fmt.Errorf("container %q has no root directory (built with NoRoot)", cmd.Container)
	}
	c := b.cfg.Containers[cmd.Container]
	rc = b.containerConfig(r, c, cwd)
	rc.Writable = cmd.WriteMode == vagga.TransientCopy
	rc.Env = append(mergeEnv(c.Environ, cmd.Environ), env...)
	if cmd.WorkDir != "" {
		rc.Workdir = path.Join("/work", cmd.WorkDir)
	}
	if cmd.UserID != 0 || cmd.GroupID != 0 || len(cmd.SupplementaryGIDs) > 0 || cmd.ExternalUserID >= 0 {
		rc.User = &runner.User{UID: cmd.UserID, GID: cmd.GroupID, Groups: cmd.SupplementaryGIDs, ExternalUID: cmd.ExternalUserID}
	}
	rc.Args = commandArgs(c, cmd, extra)
	rc.IsolateNetwork = cmd.IsolateNetwork
	rc.Volumes, commit, err = b.volumes(ctx, c, cmd, append(append([]vagga.Volume(nil), c.Volumes...), cmd.Volumes...))
	return rc, commit, err
}

// containerConfig is what every run in container c (built as r) has:
// its root, read-only; the project at /work, the working directory
// where cwd is in it; the container's ids, environ-file and the host's
// resolv.conf and hosts.
func (b *Builder) containerConfig(r *Result, c *vagga.Container, cwd string) runner.Config {
	rc := runner.Config{
		Layers:       []string{r.Root},
		BindWork:     b.cfg.Dir,
		Workdir:      "/work",
		Name:         c.Name,
		TransientDir: filepath.Join(b.store.Dir, ".transient"),
		UIDs:         c.UIDs,
		GIDs:         c.GIDs,
		EnvironFile:  c.EnvironFile,
		HostFiles:    hostFiles(c),
	}
	if rel, err := filepath.Rel(b.cfg.Dir, cwd); err == nil && cwd != "" && rel != ".." && !strings.HasPrefix(rel, "../") {
		rc.Workdir = path.Join("/work", filepath.ToSlash(rel))
	}
	return rc
}

// hostFiles are the host's files vagga shows in container c.
func hostFiles(c *vagga.Container) []runner.HostFile {
	var out []runner.HostFile
	if c.ResolvConfPath != "" {
		out = append(out, runner.HostFile{Src: "/etc/resolv.conf", Dst: c.ResolvConfPath})
	}
	if c.HostsFilePath != "" {
		out = append(out, runner.HostFile{Src: "/etc/hosts", Dst: c.HostsFilePath})
	}
	return out
}

// commandArgs is the argv of cmd with extra arguments: a run: list with
// them appended; a run: string through the container's default shell
// ("$cmdline" replaced by the string), vagga's [/bin/sh, -c, $cmdline,
// --] unless it says otherwise, with them after it.
func commandArgs(c *vagga.Container, cmd *vagga.Command, extra []string) []string {
	if !cmd.IsShell() {
		return append(append([]string(nil), cmd.Run...), extra...)
	}
	shell := c.DefaultShell
	if shell == nil {
		shell = []string{"/bin/sh", "-c", "$cmdline", "--"}
	}
	var args []string
	for _, a := range shell {
		if a == "$cmdline" {
			a = cmd.Script
		}
		args = append(args, a)
	}
	return append(args, extra...)
}

// ContainerRun builds container name when stale and returns the runner
// configuration vagga's `_run CONTAINER CMD...` has: the container's
// root (writable and thrown away with writable), its volumes, its
// environ-file and environ (not the build's !Env: "not used when
// running"), the project bound at /work and the working directory where
// cwd is in it.
func (b *Builder) ContainerRun(ctx context.Context, name string, args []string, cwd string, writable bool) (runner.Config, error) {
	r, err := b.Build(ctx, name)
	if err != nil {
		return runner.Config{}, err
	}
	if r.Root == "" {
		return runner.Config{}, fmt.Errorf("container %q has no root directory (built with NoRoot)", name)
	}
	c := b.cfg.Containers[name]
	rc := b.containerConfig(r, c, cwd)
	rc.Writable, rc.Args = writable, args
	rc.Env = mergeEnv(c.Environ, nil)
	rc.Volumes, _, err = b.volumes(ctx, c, nil, c.Volumes)
	return rc, err
}

// volumes turns vagga's volumes of a run (the container's, then the
// command's: a later one replaces an earlier one at the same path) into
// the runner's, building the containers they show and making the
// directories of persistent volumes and caches. c is the container that
// runs, cmd the command, nil for _run. commit keeps the persistent
// volumes cmd, their init-command, filled.
func (b *Builder) volumes(ctx context.Context, c *vagga.Container, cmd *vagga.Command, vols []vagga.Volume) (out []runner.Volume, commit func() error, err error) {
	byPath := map[string]vagga.Volume{}
	var order []string
	for _, v := range vols {
		if _, seen := byPath[v.Path]; !seen {
			order = append(order, v.Path)
		}
		byPath[v.Path] = v
	}
	var commits []func() error
	for _, p := range order {
		v := byPath[p]
		rv := runner.Volume{Path: v.Path, Size: v.Size, UID: v.UID, GID: v.GID}
		switch v.Kind {
		case vagga.VolumeSnapshot:
			rv.Kind = runner.Snapshot
			if v.Container != "" {
				src, err := b.Build(ctx, v.Container)
				if err != nil {
					return nil, nil, fmt.Errorf("snapshot volume %s (%s): %w", v.Path, v.Pos, err)
				}
				// vagga copies the other container's directory at the
				// same path.
				rv.From = filepath.Join(src.Root, filepath.FromSlash(rel(v.Path)))
				if !dirExists(rv.From) {
					return nil, nil, fmt.Errorf("snapshot volume %s (%s): container %q has no directory %s", v.Path, v.Pos, v.Container, v.Path)
				}
			}
		case vagga.VolumeTmpfs:
			mode := v.Mode
			rv.Kind, rv.Mode, rv.UID, rv.GID = runner.Tmpfs, &mode, 0, 0
			for _, d := range v.Subdirs {
				rv.Subdirs = append(rv.Subdirs, runner.TmpfsDir{Path: d.Path, Mode: d.Mode})
			}
			for _, f := range v.Files {
				rv.Files = append(rv.Files, runner.TmpfsFile{Path: f.Path, Content: f.Content})
			}
		case vagga.VolumeBind:
			rv.Kind, rv.HostDir, rv.ReadOnly, rv.UID, rv.GID = runner.Bind, v.HostPath, v.ReadOnly, -1, -1
		case vagga.VolumeEmpty:
			rv.Kind = runner.Empty
		case vagga.VolumeCacheDir:
			dir := filepath.Join(b.store.Dir, ".cache", filepath.FromSlash(v.Name))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, fmt.Errorf("cache volume %s (%s): %w", v.Path, v.Pos, err)
			}
			rv.Kind, rv.HostDir = runner.Bind, dir
		case vagga.VolumeContainer:
			src, err := b.Build(ctx, v.Container)
			if err != nil {
				return nil, nil, fmt.Errorf("volume %s (%s): %w", v.Path, v.Pos, err)
			}
			rv.Kind, rv.HostDir, rv.ReadOnly = runner.Bind, src.Root, true
		case vagga.VolumePersistent:
			dir, keep, err := b.persistentVolume(ctx, c, cmd, v)
			if err != nil {
				return nil, nil, err
			}
			if keep != nil {
				commits = append(commits, keep)
			}
			rv.Kind, rv.HostDir = runner.Bind, dir
		default:
			return nil, nil, fmt.Errorf("volume %s (%s): kind %q", v.Path, v.Pos, v.Kind)
		}
		out = append(out, rv)
	}
	commit = func() error {
		for _, c := range commits {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
	return out, commit, nil
}

// volumesDir holds persistent volumes: .vagga/.volumes.
func (b *Builder) volumesDir() string { return filepath.Join(b.store.Dir, ".volumes") }

// persistentVolume returns the directory of persistent volume v for a
// run of cmd: .vagga/.volumes/NAME, made with its owner the first time.
// A volume with an init-command is made by that command: when cmd is it
// and the volume is not there yet, it gets a fresh .tmp.NAME, which
// commit renames to NAME once the command succeeded (vagga runs the
// init-command as a prerequisite of every command using the volume).
func (b *Builder) persistentVolume(ctx context.Context, c *vagga.Container, cmd *vagga.Command, v vagga.Volume) (dir string, commit func() error, err error) {
	dir = filepath.Join(b.volumesDir(), v.Name)
	if dirExists(dir) {
		return dir, nil, nil
	}
	if err := os.MkdirAll(b.volumesDir(), 0o755); err != nil {
		return "", nil, err
	}
	if v.InitCommand == "" {
		return dir, nil, b.makeVolumeDir(ctx, c, dir, v)
	}
	if cmd == nil || (cmd.Name != v.InitCommand && !contains(b.aliasesOf(v.InitCommand), cmd.Name)) {
		return "", nil, fmt.Errorf("volume %s (%s): persistent volume %q is not initialized: run its init-command %q first", v.Path, v.Pos, v.Name, v.InitCommand)
	}
	tmp := filepath.Join(b.volumesDir(), ".tmp."+v.Name)
	if err := removeTree(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", nil, err
	}
	if err := b.makeVolumeDir(ctx, c, tmp, v); err != nil {
		return "", nil, err
	}
	final := dir
	return tmp, func() error { return os.Rename(tmp, final) }, nil
}

func (b *Builder) aliasesOf(name string) []string {
	if c, ok := b.cfg.Commands[name]; ok {
		return c.Aliases
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// makeVolumeDir makes the directory of persistent volume v at dir,
// owned by its owner-uid and owner-gid as container c sees them.
func (b *Builder) makeVolumeDir(ctx context.Context, c *vagga.Container, dir string, v vagga.Volume) error {
	o, err := ownersOf(c)
	if err != nil {
		return err
	}
	_, err = work(ctx, job{Mkdir: &mkdirJob{Path: dir, UID: v.UID, GID: v.GID, Owners: o}}, nil)
	if err != nil {
		return fmt.Errorf("volume %s (%s): %w", v.Path, v.Pos, err)
	}
	return nil
}

// mergeEnv returns NAME=value of base overridden by over.
func mergeEnv(base, over []vagga.EnvVar) []string {
	return sortedEnv(append(append([]vagga.EnvVar(nil), base...), over...))
}

// Resolve reports whether arg names a container of the vagga.yaml found
// from dir (rather than a path: an argument with a slash, or an existing
// directory, is a path), and if so returns the builder of that config
// with opts. `ovl run CONTAINER` uses it. No vagga.yaml means false,
// with no error. pick, when not nil, asks the selector once the project
// is known (its .vagga holds the layers the selector probes next to).
// With a decision and opts.Run nil, command steps run with the runner as
// it decided.
func Resolve(dir, arg string, opts Options, pick func(*vagga.Config) (selector.Decision, error)) (*Builder, bool, error) {
	if arg == "" || strings.Contains(arg, "/") || dirExists(filepath.Join(dir, arg)) {
		return nil, false, nil
	}
	file, err := vagga.Find(dir)
	if err != nil {
		return nil, false, nil
	}
	cfg, err := vagga.Load(file)
	if err != nil {
		return nil, false, err
	}
	if _, ok := cfg.Containers[arg]; !ok {
		return nil, false, nil
	}
	if pick != nil {
		d, err := pick(cfg)
		if err != nil {
			return nil, true, err
		}
		opts.Decision = d
	}
	if opts.Run == nil && opts.Decision.Backend != "" {
		opts.Run = RunnerFunc(opts.Decision, cfg.Dir)
	}
	return New(cfg, opts), true, nil
}
