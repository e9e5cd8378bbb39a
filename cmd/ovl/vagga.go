package main

// ovl invoked as vagga (a symlink or copy named vagga; `ovl
// install-vagga-alias DIR` makes one) reads vagga's command line
// (vagga's docs/commandline.rst): `vagga [OPTIONS] COMMAND [ARGS...]`,
// the built-in commands starting with "_", and bare `vagga`, which lists
// the commands. vagga_builtins.go has the built-ins.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/vagga"
)

// vaggaName reports whether the program was invoked as vagga.
func vaggaName(arg0 string) bool {
	return filepath.Base(arg0) == "vagga"
}

// Exit statuses of vagga's own, besides the commands'.
const (
	vaggaExitConfig  = 126 // no or a bad vagga.yaml
	vaggaExitCommand = 121 // a command that cannot run (vagga's Err(text))
	vaggaExitUsage   = 122 // a command line vagga does not take
	vaggaExitList    = 127 // bare vagga: the list of commands
)

// vaggaGlobals are vagga's options before the command.
type vaggaGlobals struct {
	Environ, UseEnv []string
	NoBuild         bool
	NoVersionCheck  bool
	NoPrerequisites bool
	ContainersOnly  bool
	IsolateNetwork  bool
	Multi           []string
}

// vaggaUsage is what `vagga --help` prints.
const vaggaUsage = `Usage:
    vagga [OPTIONS] [COMMAND] [ARGS ...]

Runs a command in container, optionally builds container if that does not
exists or outdated (this is ovl, reading vagga's command line).

Run ` + "`vagga`" + ` without arguments to see the list of commands.

Positional arguments:
  command               A vagga command to run
  args                  Arguments for the command

Optional arguments:
  -h,--help             Show this help message and exit
  -V,--version          Show vagga version and exit
  -E,--env,--environ NAME=VALUE
                        Set environment variable for running command
  -e,--use-env VAR      Propagate variable VAR into command environment
  --ignore-owner-check  Ignore checking owner of the project directory
  --no-prerequisites    Run only specified command(s), don't run
                        prerequisites
  --containers-only     Only build container images needed to run commands,
                        don't run any commands.
  --isolate-network,--no-network,--no-net
                        Run command(s) inside isolated network
  --no-image-download   Do not download container image from image index.
  --no-build            Do not build container even if it is out of date.
                        Return error code 29 if it's out of date.
  --no-version-check    Do not run versioning code, just pick whatever
                        container version with the name was run last
                        (symlinked under .vagga/NAME). Implies --no-build
  -m,--run-multi COMMAND [...]
                        Run the following list of commands. Each without an
                        arguments. When any of them fails, stop the chain.

Built-in commands: _build, _run, _clean, _list, _version_hash,
_check_overlayfs_support, _base_dir, _relative_work_dir.`

// vaggaMain runs vagga's command line args (without the program name).
func vaggaMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	g, rest, err := vaggaParseGlobals(args, stdout)
	if err != nil || g == nil {
		return err
	}
	if len(rest) > 0 && rest[0] == "_check_overlayfs_support" {
		return checkOverlayfsRun(ctx, nil, stdout) // needs no project
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	file, err := vagga.Find(cwd)
	if err != nil {
		return &exitError{code: vaggaExitConfig, msg: err.Error() + "\nHint: you need to `cd` into a project, or create a file `vagga.yaml` in it."}
	}
	cfg, err := vagga.Load(file)
	if err != nil {
		return &exitError{code: vaggaExitConfig, msg: err.Error()}
	}
	v := &vaggaRun{g: g, cfg: cfg, cwd: cwd, stdin: stdin, stdout: stdout, stderr: stderr}
	switch {
	case len(g.Multi) > 0:
		return v.commands(ctx, g.Multi, nil)
	case len(rest) == 0:
		vaggaPrintHelp(stderr, cfg)
		return &exitError{code: vaggaExitList}
	case strings.HasPrefix(rest[0], "_"):
		if b, ok := vaggaBuiltins[rest[0]]; ok {
			return b(ctx, v, rest[1:])
		}
		if what, ok := vaggaRefusedBuiltins[rest[0]]; ok {
			msg := fmt.Sprintf("vagga %s is not supported by ovl", rest[0])
			if what != "" {
				msg += ": " + what
			}
			return &exitError{code: vaggaExitCommand, msg: msg}
		}
		if _, ok := cfg.LookupCommand(rest[0]); !ok {
			return &exitError{code: vaggaExitCommand, msg: fmt.Sprintf("Command %q not found and is not an alias", rest[0])}
		}
	}
	return v.commands(ctx, rest[:1], rest[1:])
}

// vaggaParseGlobals reads vagga's options up to the command; the rest is
// the command and its arguments. A nil g means the run is over
// (--version, --help).
func vaggaParseGlobals(args []string, stdout io.Writer) (g *vaggaGlobals, rest []string, err error) {
	g = &vaggaGlobals{}
	value := func(i *int, arg, flag string) (string, error) {
		if v, ok := strings.CutPrefix(arg, flag+"="); ok {
			return v, nil
		}
		if len(flag) == 2 && len(arg) > 2 && strings.HasPrefix(arg, flag) {
			return arg[2:], nil
		}
		if *i+1 >= len(args) {
			return "", &exitError{code: vaggaExitUsage, msg: fmt.Sprintf("Option %s requires an argument\n%s", flag, "Usage: vagga [OPTIONS] [COMMAND] [ARGS ...]")}
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			return g, args[i:], nil
		}
		flag, _, _ := strings.Cut(a, "=")
		if len(flag) > 2 && !strings.HasPrefix(flag, "--") {
			flag = flag[:2] // -EFOO=bar
		}
		switch flag {
		case "-h", "--help":
			fmt.Fprintln(stdout, vaggaUsage)
			return nil, nil, nil
		case "-V", "--version":
			fmt.Fprintf(stdout, "%s (ovl: vagga's command line and vagga.yaml)\n", vagga.ImplementsVagga)
			return nil, nil, nil
		case "-E", "--env", "--environ":
			v, err := value(&i, a, flag)
			if err != nil {
				return nil, nil, err
			}
			g.Environ = append(g.Environ, v)
		case "-e", "--use-env":
			v, err := value(&i, a, flag)
			if err != nil {
				return nil, nil, err
			}
			g.UseEnv = append(g.UseEnv, v)
		case "--no-build":
			g.NoBuild = true
		case "--no-version-check":
			g.NoVersionCheck, g.NoBuild = true, true
		case "--no-prerequisites":
			g.NoPrerequisites = true
		case "--containers-only":
			g.ContainersOnly = true
		case "--ignore-owner-check", "--no-image-download":
			// ovl checks no owner and downloads no image.
		case "--isolate-network", "--no-network", "--no-net":
			g.IsolateNetwork = true
		case "-m", "--run-multi":
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				g.Multi = append(g.Multi, args[i])
			}
			if len(g.Multi) == 0 {
				return nil, nil, &exitError{code: vaggaExitUsage, msg: "-m needs the commands to run: vagga -m cmd1 cmd2"}
			}
		default:
			return nil, nil, &exitError{code: vaggaExitUsage, msg: fmt.Sprintf("Unknown option %q\nUsage: vagga [OPTIONS] [COMMAND] [ARGS ...] (vagga --help lists the options)", a)}
		}
	}
	return g, nil, nil
}

// vaggaRun is what a vagga command line works with.
type vaggaRun struct {
	g              *vaggaGlobals
	cfg            *vagga.Config
	cwd            string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// builder returns the builder of the project, on the backend the
// selector chooses ($OVL_BACKEND forces one), with build progress on
// stderr.
func (v *vaggaRun) builder(ctx context.Context, opts builder.Options) (*builder.Builder, error) {
	d, err := buildDecision(ctx, v.cfg, "")
	if err != nil {
		return nil, err
	}
	progress := &buildProgress{w: v.stderr}
	opts.Decision, opts.Run, opts.Output = d, builder.RunnerFunc(d, v.cfg.Dir), v.stderr
	opts.NoVersionCheck = v.g.NoVersionCheck
	if opts.Events == nil {
		opts.Events = func(e builder.Event) {
			if e.Status != builder.StatusCached {
				progress.event(e)
			}
		}
	}
	return builder.New(v.cfg, opts), nil
}

// commands runs the commands names, args going to the last, as vagga
// does, and turns how it ended into the exit status.
func (v *vaggaRun) commands(ctx context.Context, names, args []string) error {
	env, err := execEnv(v.g.Environ, v.g.UseEnv)
	if err != nil {
		return &exitError{code: vaggaExitConfig, msg: "Error propagating environment: " + err.Error()}
	}
	b, err := v.builder(ctx, builder.Options{})
	if err != nil {
		return &exitError{code: vaggaExitCommand, msg: err.Error()}
	}
	code, err := b.RunCommands(ctx, names, builder.CommandOptions{Args: args, Cwd: v.cwd, Env: env, NoBuild: v.g.NoBuild,
		NoPrerequisites: v.g.NoPrerequisites, ContainersOnly: v.g.ContainersOnly, IsolateNetwork: v.g.IsolateNetwork, Stdin: v.stdin, Stdout: v.stdout, Stderr: v.stderr})
	return commandStatus(code, err, v.stdout, "", vaggaExitCommand)
}

// commandStatus turns what RunCommands returned into the exit status, as
// `vagga COMMAND` and `ovl exec` report it: --help's text on stdout and
// 0; the status of a command line refused (121, 122), of a program not
// run (125, 126, 127, its message after prefix), of a stale container
// with --no-build (29); failed for any other error (the build's); else
// the command's own.
func commandStatus(code int, err error, stdout io.Writer, prefix string, failed int) error {
	var ae *builder.ArgsError
	var re *builder.RunError
	switch {
	case errors.As(err, &ae) && ae.Code == 0:
		fmt.Fprintln(stdout, ae.Msg)
		return nil
	case errors.As(err, &ae):
		return &exitError{code: ae.Code, msg: ae.Msg}
	case errors.As(err, &re):
		return &exitError{code: re.Code, msg: prefix + re.Err.Error()}
	case err != nil && code == builder.ExitStale:
		return &exitError{code: code, msg: err.Error()}
	case err != nil:
		return &exitError{code: failed, msg: err.Error()}
	case code != 0:
		return &exitError{code: code}
	}
	return nil
}

// vaggaPrintHelp lists the commands as bare vagga does: by group (the
// first one "Available commands"), without those starting with "_",
// with their description and aliases.
func vaggaPrintHelp(w io.Writer, cfg *vagga.Config) {
	var groups []string
	byGroup := map[string][]string{}
	for _, n := range cfg.CommandNames() {
		g := cfg.Commands[n].Group
		if _, ok := byGroup[g]; !ok {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], n)
	}
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		title := g
		if title == "" {
			title = "Available commands"
		}
		fmt.Fprintf(w, "%s:\n", title)
		for _, n := range byGroup[g] {
			if strings.HasPrefix(n, "_") {
				continue
			}
			c := cfg.Commands[n]
			fmt.Fprintf(w, "    %s", n)
			if desc := strings.TrimRight(c.Description, "\n"); desc != "" {
				fmt.Fprint(w, vaggaPad(n, 19, 24)+strings.ReplaceAll(desc, "\n", "\n"+strings.Repeat(" ", 24)))
			}
			var aliases []string
			for _, a := range c.Aliases {
				if _, own := cfg.Commands[a]; !own {
					aliases = append(aliases, a)
				}
			}
			if len(aliases) > 0 {
				fmt.Fprintf(w, "\n%s(aliases: %s)", strings.Repeat(" ", 24), strings.Join(aliases, ", "))
			}
			fmt.Fprintln(w)
		}
	}
}

// vaggaPad is what goes between a name and its description in vagga's
// lists: spaces up to column width, or a new line indented by indent.
func vaggaPad(name string, width, indent int) string {
	if len(name) > width {
		return "\n" + strings.Repeat(" ", indent)
	}
	return strings.Repeat(" ", width-len(name)+1)
}
