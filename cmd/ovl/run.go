package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
	"github.com/ovl-dev/ovl/vagga"
)

func init() { register(runNewCmd) }

// runOptions are `ovl run`'s parsed flags and arguments.
type runOptions struct {
	Root         string
	Args         []string
	Writable     bool
	KeepChanges  string
	Volumes      []string // PATH=KIND[,opts], parsed by runParseVolume
	Env          []string
	Workdir      string
	WorkdirSet   bool // --workdir given: it wins over a container's
	BindWork     string
	Backend      string
	LayerDir     string
	TransientDir string
}

// Exit statuses of ovl run besides the command's own, as docker and
// podman use them.
const (
	runExitOwnError     = 125 // ovl could not run the command: bad input, mount failure
	runExitNotExec      = 126 // the command exists but cannot be executed
	runExitNotFound     = 127 // no such command in the container
	runExitSignalOffset = 128 // 128+N: the command was killed by signal N
)

func runNewCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] ROOT|CONTAINER -- CMD [ARGS...]",
		Short: "Run a command in a container root, with throw-away writable state",
		Long: `run runs CMD in the container whose root directory is ROOT, in new user
(without CAP_SYS_ADMIN: an ordinary user, root in a default container), mount
and pid namespaces, with /proc, /sys (read-only), a minimal /dev, and tmpfs
/tmp and /run, in a clean environment (PATH, HOME, TERM, plus --env). Where
no namespace can be made (a seccomp filter forbids them, as Docker's default
profile does), the copy backend enters a copy of ROOT with chroot instead:
no /proc, no bind volumes, and ovl says so when that cannot work.

ROOT may also name a container of the project's vagga.yaml (found from the
current directory or a parent) when no such directory exists: the container
is built first when stale (see 'ovl build'), and the command runs as vagga's
'_run CONTAINER CMD' runs it: the project bound at /work, in the current
directory's place under /work, with the container's volumes, environ-file
and environ (not the build's !Env: vagga does not use them when running).

The root is read-only unless --writable: then every change lands in a fresh
upper layer that is thrown away at exit (or kept as a layer in the
--keep-changes directory); ROOT itself is never modified. The overlay comes
from the backend 'ovl check' reports (or --backend): native and fuse cost
milliseconds whatever the size of ROOT; copy copies ROOT first.

Volumes (--volume, repeatable):
  PATH=snapshot[,size=100M][,owner=UID:GID][,from=DIR]
      the contents of PATH (or of the host directory DIR) appear writable;
      writes are discarded at exit and limited to size (default 100Mi). The
      mountpoint keeps its mode and owner unless owner= is given.
  PATH=bind:HOSTDIR[,ro]   the host directory HOSTDIR
  PATH=tmpfs[,size=100M][,owner=UID:GID]   an empty tmpfs
Sizes take the suffixes k, M, G (powers of 1024; Ki, Mi, Gi too).

Exit status:
  the command's own status when it ran;
  128+N   the command was killed by signal N (143 for SIGTERM);
  125     ovl itself failed: bad ROOT, bad volume, mount failure;
  126     the command exists in the container but cannot be executed;
  127     the command was not found in the container.`,
		Example: `  ovl run ./root -- sh -c 'echo hello'
  ovl run --writable ./root -- apt-get install -y gcc
  ovl run --writable --keep-changes ./layers/step1 ./root -- make install
  ovl run --volume /etc=snapshot,size=10M --env LANG=C ./root -- sh
  ovl run --volume /data=bind:/srv/data,ro --bind-work . ./root -- ls /work`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Root = args[0]
			o.Args = args[1:]
			if len(o.Args) > 0 && o.Args[0] == "--" {
				o.Args = o.Args[1:]
			}
			if len(o.Args) == 0 {
				return &exitError{code: runExitOwnError, msg: "run: no command given: write ovl run ROOT -- CMD [ARGS...]"}
			}
			o.WorkdirSet = cmd.Flags().Changed("workdir")
			return runRun(cmd.Context(), o, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after ROOT belong to the command
	f.BoolVar(&o.Writable, "writable", false, "give the command a writable root whose changes are thrown away at exit")
	f.StringVar(&o.KeepChanges, "keep-changes", "", "with --writable: keep the changes in this directory, as a layer")
	f.StringArrayVarP(&o.Volumes, "volume", "v", nil, "PATH=snapshot[,size=][,owner=U:G][,from=DIR] | PATH=bind:HOSTDIR[,ro] | PATH=tmpfs[,size=]")
	f.StringArrayVarP(&o.Env, "env", "e", nil, "KEY=VALUE added to the command's clean environment")
	f.StringVarP(&o.Workdir, "workdir", "w", "/", "working directory inside the container")
	f.StringVar(&o.BindWork, "bind-work", "", "host directory (usually the project) bound at /work")
	backendFlag(f, &o.Backend)
	layerDirFlag(f, &o.LayerDir)
	f.StringVar(&o.TransientDir, "transient-dir", "", "where the copy backend's transient copies go (default: ovl's state directory)")
	return cmd
}

// runConfig turns the options into a runner configuration, without a
// backend.
func runConfig(o *runOptions) (runner.Config, error) {
	cfg := runner.Config{
		Layers: []string{o.Root}, Writable: o.Writable, KeepChanges: o.KeepChanges, Env: o.Env,
		Workdir: o.Workdir, BindWork: o.BindWork, Args: o.Args, TransientDir: o.TransientDir,
	}
	for _, v := range o.Volumes {
		vol, err := runParseVolume(v)
		if err != nil {
			return cfg, err
		}
		cfg.Volumes = append(cfg.Volumes, vol)
	}
	return cfg, nil
}

func runRun(ctx context.Context, o *runOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := runConfig(o)
	if err != nil {
		return &exitError{code: runExitOwnError, msg: "run: " + err.Error()}
	}
	if fi, err := os.Stat(o.Root); err != nil || !fi.IsDir() {
		rc, found, err := runBuildContainer(ctx, o, stderr)
		if err != nil {
			return &exitError{code: runExitOwnError, msg: "run: " + err.Error()}
		}
		if !found {
			msg := fmt.Sprintf("run: container root %s: not an existing directory, nor a container of a vagga.yaml here (build the container first, or fix the path)", o.Root)
			return &exitError{code: runExitOwnError, msg: msg}
		}
		cfg = runOverContainer(rc, cfg, o)
	}
	if err := cfg.Validate(); err != nil {
		return &exitError{code: runExitOwnError, msg: "run: " + err.Error()}
	}
	sel := selector.Options{Backend: o.Backend, Spec: &layer.Spec{Lowers: cfg.Layers}, LayerDir: o.LayerDir, Project: cwdProject()}
	d, err := selector.Select(ctx, sel)
	if err != nil {
		return &exitError{code: runExitOwnError, msg: "run: " + err.Error()}
	}
	slog.Debug("run: backend chosen", "backend", d.Backend, "reasons", strings.Join(d.Reasons, "; "))
	cfg.Decision = d
	cfg.Stdin, cfg.Stdout, cfg.Stderr = stdin, stdout, stderr
	res, err := runner.Run(ctx, cfg)
	if err != nil && res.ExitCode == runExitOwnError && ctx.Err() == nil && !errors.Is(err, runner.ErrBadConfig) {
		// A backend chosen from the probe cache that fails may have
		// outlived what the cache knew: probe again, once, for the next
		// run (Recheck says so). The command is not run again here: a
		// failure after it started would run it twice.
		if now, changed, rerr := selector.Recheck(ctx, sel, d, err); rerr == nil && changed {
			err = fmt.Errorf("%w; the next run uses the %s backend", err, now.Backend)
		}
	}
	return runExitStatus(res, err, "run", fmt.Sprintf("run (%s backend)", d.Backend))
}

// runExitStatus turns what runner.Run returned into ovl's exit status, as
// `ovl run` and `ovl exec` report it: 127 and 126 for a command not found
// or not executable in the container, 125 for a failure of ovl itself, else
// the command's own (nil for 0). verb starts the first two messages, own
// the message of ovl's own failure.
func runExitStatus(res runner.Result, err error, verb, own string) error {
	switch {
	case errors.Is(err, runner.ErrCommandNotFound):
		return &exitError{code: runExitNotFound, msg: verb + ": " + err.Error()}
	case errors.Is(err, runner.ErrNotExecutable):
		return &exitError{code: runExitNotExec, msg: verb + ": " + err.Error()}
	case err != nil:
		return &exitError{code: runExitOwnError, msg: fmt.Sprintf("%s: %v", own, err)}
	case res.ExitCode != 0:
		return &exitError{code: res.ExitCode}
	}
	return nil
}

// runBuildContainer treats ROOT as the name of a container of the
// vagga.yaml in the current directory or above: it builds the container
// when stale and returns the run vagga's _run gives it (its root, its
// volumes and environ, the project at /work, the working directory's
// place in it). found is false when there is no such container.
func runBuildContainer(ctx context.Context, o *runOptions, stderr io.Writer) (rc runner.Config, found bool, err error) {
	cwd, err := os.Getwd()
	if err != nil {
		return rc, false, err
	}
	p := &buildProgress{w: stderr, quiet: true}
	pick := func(vc *vagga.Config) (selector.Decision, error) { return buildDecision(ctx, vc, o.Backend) }
	b, found, err := builder.Resolve(cwd, o.Root, builder.Options{Events: p.event, Output: stderr}, pick)
	if err != nil || !found {
		return rc, found, err
	}
	rc, err = b.ContainerRun(ctx, o.Root, o.Args, cwd, o.Writable)
	return rc, true, err
}

// runOverContainer puts the command line's flags over a container's run:
// --writable, --keep-changes, --volume and --env add to it, --workdir and
// --bind-work replace its own when given.
func runOverContainer(rc, flags runner.Config, o *runOptions) runner.Config {
	rc.Writable = rc.Writable || flags.Writable
	rc.KeepChanges = flags.KeepChanges
	rc.Volumes = append(rc.Volumes, flags.Volumes...)
	rc.Env = append(rc.Env, flags.Env...)
	if o.WorkdirSet {
		rc.Workdir = flags.Workdir
	}
	if flags.BindWork != "" {
		rc.BindWork = flags.BindWork
	}
	if flags.TransientDir != "" {
		rc.TransientDir = flags.TransientDir
	}
	return rc
}

// runParseVolume parses one --volume value.
func runParseVolume(s string) (runner.Volume, error) {
	v := runner.Volume{UID: -1, GID: -1}
	path, spec, ok := strings.Cut(s, "=")
	if !ok || path == "" || spec == "" {
		return v, fmt.Errorf("--volume %s: want PATH=snapshot|bind:HOSTDIR|tmpfs[,options]", s)
	}
	v.Path = path
	parts := strings.Split(spec, ",")
	kind, arg, hasArg := strings.Cut(parts[0], ":")
	v.Kind = kind
	switch kind {
	case runner.Bind:
		if !hasArg || arg == "" {
			return v, fmt.Errorf("--volume %s: bind needs a host directory: PATH=bind:HOSTDIR[,ro]", s)
		}
		v.HostDir = arg
	case runner.Snapshot, runner.Tmpfs:
		if hasArg {
			return v, fmt.Errorf("--volume %s: %s takes no ':' argument", s, kind)
		}
	default:
		return v, fmt.Errorf("--volume %s: unknown volume kind %q (use snapshot, bind or tmpfs)", s, kind)
	}
	for _, opt := range parts[1:] {
		key, val, _ := strings.Cut(opt, "=")
		var err error
		switch {
		case key == "ro" && kind == runner.Bind:
			v.ReadOnly = true
		case key == "rw" && kind == runner.Bind:
			v.ReadOnly = false
		case key == "size" && kind != runner.Bind:
			v.Size, err = runParseSize(val)
		case key == "owner" && kind != runner.Bind:
			v.UID, v.GID, err = runParseOwner(val)
		case key == "from" && kind == runner.Snapshot:
			if val == "" {
				err = errors.New("from= needs a directory")
			}
			v.From = val
		default:
			err = fmt.Errorf("option %q does not apply to a %s volume", opt, kind)
		}
		if err != nil {
			return v, fmt.Errorf("--volume %s: %w", s, err)
		}
	}
	return v, nil
}

// runParseSize parses a size such as 100M, 512k, 1Gi or 4096 into bytes.
func runParseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "kKmMgGtTiIbB")
	unit := strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "b"))
	unit = strings.TrimSuffix(unit, "i")
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
	n, err := strconv.ParseInt(num, 10, 64)
	sh, ok := shift[unit]
	if err != nil || !ok || n <= 0 || n > (1<<62)>>sh {
		return 0, fmt.Errorf("size %q: want a positive number with an optional k, M, G or T suffix, e.g. size=100M", s)
	}
	return n << sh, nil
}

// runParseOwner parses UID:GID.
func runParseOwner(s string) (int, int, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("owner %q: want numeric UID:GID, e.g. owner=1000:1000", s)
	}
	return uid, gid, nil
}
