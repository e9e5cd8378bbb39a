package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/selector"
	"github.com/ovl-dev/ovl/vagga"
)

func init() { register(execNewCmd) }

// execOptions are `ovl exec`'s parsed flags and arguments.
type execOptions struct {
	Command         string
	Args            []string
	Config          string
	Backend         string
	Quiet           bool
	Environ         []string // -E NAME=VALUE
	UseEnv          []string // -e NAME
	NoBuild         bool
	NoPrerequisites bool
}

func execNewCmd(g *globalOptions) *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec [flags] COMMAND [ARGS...]",
		Short: "Run a command of vagga.yaml, building its container first when stale",
		Long: `exec runs COMMAND from the commands: of the project's vagga.yaml as vagga
runs 'vagga COMMAND' (the vagga alias of ovl does the same): its container is
built first if any step changed (see 'ovl build'), then the command runs in
the container's root with the container's and the command's volumes and
environ, the project bound at /work, in the current directory's place under
/work (or the command's work-dir), as its user-id.

ARGS are checked as vagga checks them: against the command's options: (a
docopt text; the values become VAGGAOPT_* and VAGGACLI_* variables), or
passed on when it accepts arguments (a run: list does; a run: string only
with accepts-arguments: true, as $1...). Its prerequisites run first. A
!Supervise runs its children together (--only, --exclude pick them).

write-mode: read-only (the default) mounts the root read-only;
transient-hard-link-copy gives the command a writable root whose changes
are thrown away when it exits (an overlay on native and fuse, a copy on the
copy backend): the built container is never modified.

Exit status: the command's own; 128+N when killed by signal N; 125 when
ovl could not run it; 126 not executable; 127 not found in the container;
121 options: refused the arguments, 122 the command takes none; 29 a
container is stale with --no-build; 1 when the build failed.`,
		Example: `  ovl exec test
  ovl exec run-server --port 8080
  ovl exec -E DEBUG=1 test`,
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
	execVaggaFlags(f, o)
	return cmd
}

// execVaggaFlags adds vagga's flags of a command run to f.
func execVaggaFlags(f *pflag.FlagSet, o *execOptions) {
	f.StringArrayVarP(&o.Environ, "environ", "E", nil, "NAME=VALUE set in the command's environment (vagga's -E/--env/--environ)")
	f.StringArrayVarP(&o.UseEnv, "use-env", "e", nil, "pass variable NAME of this environment on to the command")
	f.BoolVar(&o.NoBuild, "no-build", false, "do not build: exit 29 if a container is out of date")
	f.BoolVar(&o.NoPrerequisites, "no-prerequisites", false, "run only the command, not its prerequisites")
}

// execEnv turns -E and -e into the variables they set, as vagga does
// (-E NAME without a value unsets an earlier -e NAME).
func execEnv(environ, useEnv []string) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, k := range useEnv {
		if strings.Contains(k, "=") {
			return nil, fmt.Errorf("environment variable name %q (for -e/--use-env) can't contain equals `=`: to set a pair use -E/--environ", k)
		}
		set(k, os.Getenv(k))
	}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			delete(vars, k)
			continue
		}
		set(k, v)
	}
	var out []string
	for _, k := range order {
		if v, ok := vars[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out, nil
}

func execRun(ctx context.Context, o *execOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := buildLoad(o.Config)
	if err != nil {
		return err
	}
	return execCommand(ctx, cfg, o, stdin, stdout, stderr)
}

// execCommand runs command o.Command of cfg as vagga does, and turns how
// it ended into ovl's exit status.
func execCommand(ctx context.Context, cfg *vagga.Config, o *execOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	env, err := execEnv(o.Environ, o.UseEnv)
	if err != nil {
		return &exitError{code: 126, msg: err.Error()}
	}
	d, err := buildDecision(ctx, cfg, o.Backend)
	if err != nil {
		return &exitError{code: runExitOwnError, msg: "exec: " + err.Error()}
	}
	progress := &buildProgress{w: stderr, quiet: o.Quiet}
	eng := builder.New(cfg, builder.Options{Decision: d, Run: builder.RunnerFunc(d, cfg.Dir), Events: func(e builder.Event) {
		if e.Status != builder.StatusCached { // a fresh container says nothing
			progress.event(e)
		}
	}, Output: stderr, ConfigArg: o.Config})
	cwd, _ := os.Getwd()
	// Each run's uppers are scratch, not layers of the project: it is
	// placed as `ovl run` is (its backend may be faster than the build's
	// where the project is on a filesystem overlay refuses uppers on).
	decide := func(ctx context.Context, name, container string, layers []string) (selector.Decision, error) {
		rd, err := selector.Select(ctx, selector.Options{Backend: o.Backend, Spec: &layer.Spec{Lowers: layers}, Project: cfg.Dir})
		if err != nil {
			return rd, fmt.Errorf("exec %s: %w", name, err)
		}
		if !o.Quiet {
			fmt.Fprintf(stderr, "[%s] in container %s, %s backend\n", name, container, rd.Backend)
		}
		return rd, nil
	}
	code, err := eng.RunCommand(ctx, o.Command, builder.CommandOptions{Args: o.Args, Cwd: cwd, Env: env, NoBuild: o.NoBuild,
		NoPrerequisites: o.NoPrerequisites, Decide: decide, Stdin: stdin, Stdout: stdout, Stderr: stderr})
	return commandStatus(code, err, stdout, fmt.Sprintf("exec %s (%s backend): ", o.Command, d.Backend), 1)
}
