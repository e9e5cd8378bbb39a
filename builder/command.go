package builder

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/vagga"
)

// CommandRun builds what command name of the config needs (its container
// and the containers its snapshot volumes take contents from), building
// only what is stale, and returns the runner configuration that runs it
// with extra arguments: the container's flattened root, writable and
// thrown away for write-mode transient-hard-link-copy, the container's
// and the command's volumes and environment (the command's win), the
// project bound at /work. cwd, when inside the project, sets the working
// directory as vagga does (/work/<relative cwd>); the command's work-dir
// overrides it. Backend and stdio are the caller's to fill in.
func (b *Builder) CommandRun(ctx context.Context, name string, extra []string, cwd string) (runner.Config, error) {
	cmd, ok := b.cfg.Commands[name]
	if !ok {
		return runner.Config{}, fmt.Errorf("%w %q in %s (it has: %s)", ErrNoCommand, name, b.cfg.File, strings.Join(b.cfg.CommandNames(), ", "))
	}
	r, err := b.Build(ctx, cmd.Container)
	if err != nil {
		return runner.Config{}, err
	}
	if r.Root == "" {
		return runner.Config{}, fmt.Errorf("container %q has no root directory (built with NoRoot)", cmd.Container)
	}
	c := b.cfg.Containers[cmd.Container]
	cfg := runner.Config{
		Layers:       []string{r.Root},
		Writable:     cmd.WriteMode == vagga.TransientCopy,
		Env:          mergeEnv(c.Environ, cmd.Environ),
		BindWork:     b.cfg.Dir,
		Workdir:      "/work",
		Name:         cmd.Container,
		TransientDir: filepath.Join(b.store.Dir, ".transient"),
		UIDs:         c.UIDs,
		GIDs:         c.GIDs,
	}
	if rel, err := filepath.Rel(b.cfg.Dir, cwd); err == nil && cwd != "" && !strings.HasPrefix(rel, "..") {
		cfg.Workdir = path.Join("/work", filepath.ToSlash(rel))
	}
	if cmd.WorkDir != "" {
		cfg.Workdir = path.Join("/work", cmd.WorkDir)
	}
	cfg.Args = append(append([]string(nil), cmd.Run...), extra...)
	if cmd.IsShell() {
		// sh -c SCRIPT -- ARGS...: the arguments are $1..., as vagga.
		cfg.Args = append([]string{"/bin/sh", "-c", cmd.Script, "--"}, extra...)
	}
	vols := map[string]vagga.Volume{}
	var order []string
	for _, v := range append(append([]vagga.Volume(nil), c.Volumes...), cmd.Volumes...) {
		if _, seen := vols[v.Path]; !seen {
			order = append(order, v.Path)
		}
		vols[v.Path] = v
	}
	for _, p := range order {
		v := vols[p]
		rv := runner.Volume{Path: v.Path, Kind: v.Kind, Size: v.Size, UID: v.UID, GID: v.GID, HostDir: v.HostPath, ReadOnly: v.ReadOnly}
		switch v.Kind {
		case vagga.VolumeSnapshot:
			rv.Kind = runner.Snapshot
			if v.Container != "" {
				src, err := b.Build(ctx, v.Container)
				if err != nil {
					return runner.Config{}, fmt.Errorf("snapshot volume %s (%s): %w", v.Path, v.Pos, err)
				}
				rv.From = src.Root
			}
		case vagga.VolumeTmpfs:
			rv.Kind = runner.Tmpfs
		case vagga.VolumeBind:
			rv.Kind = runner.Bind
		}
		cfg.Volumes = append(cfg.Volumes, rv)
	}
	return cfg, nil
}

// mergeEnv returns NAME=value of base overridden by over.
func mergeEnv(base, over []vagga.EnvVar) []string {
	return sortedEnv(append(append([]vagga.EnvVar(nil), base...), over...))
}

// Resolve reports whether arg names a container of the vagga.yaml found
// from dir (rather than a path: an argument with a slash, or an existing
// directory, is a path), and if so builds it when stale and returns it.
// `ovl run CONTAINER` uses it. No vagga.yaml means false, with no error.
// pick, when not nil, chooses the backend once the project is known
// (its .vagga holds the layers the selector probes next to). With a
// backend and opts.Run nil, command steps run with the runner on it.
func Resolve(ctx context.Context, dir, arg string, opts Options, pick func(*vagga.Config) (backend.Backend, error)) (*Result, bool, error) {
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
		b, err := pick(cfg)
		if err != nil {
			return nil, true, err
		}
		opts.Backend = b
	}
	if opts.Run == nil && opts.Backend != nil {
		opts.Run = RunnerFunc(opts.Backend, cfg.Dir)
	}
	r, err := New(cfg, opts).Build(ctx, arg)
	return r, true, err
}
