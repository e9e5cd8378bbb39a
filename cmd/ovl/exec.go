package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
)

func init() { register(execNewCmd) }

// execOptions are `ovl exec`'s parsed flags and arguments.
type execOptions struct {
	Command string
	Args    []string
	Config  string
	Backend string
	Quiet   bool
}

func execNewCmd(g *globalOptions) *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec [flags] COMMAND [ARGS...]",
		Short: "Run a command of vagga.yaml, building its container first when stale",
		Long: `exec runs COMMAND from the commands: of the project's vagga.yaml, as vagga
runs 'vagga COMMAND': its container is built first if any step changed (see
'ovl build'), then the command runs in the container's root with the
container's and the command's volumes (!Snapshot, !Tmpfs, !BindRW, !BindRO)
and environ, the project bound at /work, in /work (or the matching
directory below it when run from inside the project, or the command's
work-dir). ARGS are appended to a run: list, or become $1... of a run:
string.

write-mode: read-only (the default) mounts the root read-only;
transient-hard-link-copy gives the command a writable root whose changes
are thrown away when it exits (an overlay on native and fuse, a copy on the
copy backend): the built container is never modified.

Exit status: the command's own; 128+N when killed by signal N; 125 when
ovl could not run it; 126 not executable; 127 not found in the container;
1 when the build failed.`,
		Example: `  ovl exec test
  ovl exec run-server --port 8080`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Command, o.Args = args[0], args[1:]
			return execRun(cmd.Context(), o, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after COMMAND are its arguments
	buildConfigFlag(f, &o.Config)
	backendFlag(f, &o.Backend)
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "do not print build progress")
	return cmd
}

func execRun(ctx context.Context, o *execOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := buildLoad(o.Config)
	if err != nil {
		return err
	}
	d, err := buildDecision(ctx, cfg, o.Backend)
	if err != nil {
		return &exitError{code: runExitOwnError, msg: "exec: " + err.Error()}
	}
	progress := &buildProgress{w: stderr, quiet: o.Quiet}
	builder := builder.New(cfg, builder.Options{Decision: d, Run: builder.RunnerFunc(d, cfg.Dir), Events: func(e builder.Event) {
		if e.Status != builder.StatusCached { // a fresh container says nothing
			progress.event(e)
		}
	}, Output: stderr})
	cwd, _ := os.Getwd()
	rc, err := builder.CommandRun(ctx, o.Command, o.Args, cwd)
	if err != nil {
		return err
	}
	// The run's uppers are scratch, not layers of the project: it is
	// placed as `ovl run` is (its backend may be faster than the build's
	// where the project is on a filesystem overlay refuses uppers on).
	rd, err := selector.Select(ctx, selector.Options{Backend: o.Backend, Spec: &layer.Spec{Lowers: rc.Layers}, Project: cfg.Dir})
	if err != nil {
		return &exitError{code: runExitOwnError, msg: "exec: " + err.Error()}
	}
	rc.Decision = rd
	if !o.Quiet {
		fmt.Fprintf(stderr, "[%s] in container %s, %s backend\n", o.Command, cfg.Commands[o.Command].Container, rd.Backend)
	}
	rc.Stdin, rc.Stdout, rc.Stderr = stdin, stdout, stderr
	res, err := runner.Run(ctx, rc)
	return runExitStatus(res, err, "exec", fmt.Sprintf("exec %s (%s backend)", o.Command, rd.Backend))
}
