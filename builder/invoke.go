package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
	"github.com/ovl-dev/ovl/vagga"
)

// Exit statuses of RunCommand that are not a command's own, as vagga's.
const (
	ExitBadOptions   = 121 // a command line its options: (docopt) refuse
	ExitBadArguments = 122 // arguments to a command that takes none
	ExitStale        = 29  // --no-build and a container is out of date
)

// CommandOptions say how a command of vagga.yaml is invoked, as
// `vagga COMMAND ARGS...` does.
type CommandOptions struct {
	// Args are the words after the command's name.
	Args []string
	// Cwd is where it is run from: under the project, it is the working
	// directory's place under /work.
	Cwd string
	// Env is NAME=VALUE set over every other variable of the commands
	// (vagga's -E/--environ and -e/--use-env).
	Env []string
	// NoBuild refuses to build: a stale container ends the run with
	// ExitStale (vagga's --no-build).
	NoBuild bool
	// NoPrerequisites runs the command alone (--no-prerequisites).
	NoPrerequisites bool
	// ContainersOnly builds what the commands need and runs nothing
	// (--containers-only).
	ContainersOnly bool
	// IsolateNetwork gives every command a network of its own, only lo
	// (vagga's --isolate-network).
	IsolateNetwork bool
	// Decide, when set, picks the backend each run mounts its container
	// with, from the layers it mounts: a run's uppers are scratch, not
	// the project's layers, so it may be placed where a faster backend
	// works (as `ovl run` is). name is the command, or COMMAND.PROCESS of
	// a !Supervise. Nil runs with the build's Decision.
	Decide         func(ctx context.Context, name, container string, layers []string) (selector.Decision, error)
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// runDecision is the Decision a run of container (as name) mounts
// layers with (CommandOptions.Decide).
func (b *Builder) runDecision(ctx context.Context, o CommandOptions, name, container string, layers []string) (selector.Decision, error) {
	if o.Decide == nil {
		return b.opts.Decision, nil
	}
	return o.Decide(ctx, name, container, layers)
}

// ArgsError is a command line a command does not take. Msg is printed
// (with the usage) and Code is the exit status; Code 0 is --help, whose
// Msg goes to stdout.
type ArgsError struct {
	Code int
	Msg  string
}

func (e *ArgsError) Error() string { return e.Msg }

// RunError is a command that could not be run (not one that ran and
// failed): Code is the status to exit with (125, or 126 and 127 for a
// program the container cannot execute or does not have).
type RunError struct {
	Code int
	Err  error
}

func (e *RunError) Error() string { return e.Err.Error() }
func (e *RunError) Unwrap() error { return e.Err }

// RunCommand runs command name of the config (or the command it is an
// alias of) as vagga does: its arguments checked against options: (the
// values become VAGGAOPT_* and VAGGACLI_* variables) or
// accepts-arguments; its prerequisites first, recursively, each once,
// after the containers of all of them are built; a !Supervise's
// children together, stopped as its mode says; the banner, and the
// epilog after success. It returns the exit status of the command (or
// of the first prerequisite that failed). An error is an *ArgsError, a
// *RunError, a stale container with NoBuild, or a build that failed.
func (b *Builder) RunCommand(ctx context.Context, name string, o CommandOptions) (int, error) {
	return b.RunCommands(ctx, []string{name}, o)
}

// RunCommands is RunCommand for several commands in a row (vagga's -m):
// the containers of all of them (and of their prerequisites) are built
// first, then each runs in turn, until one fails. o.Args go to the last.
// With o.ContainersOnly nothing runs.
func (b *Builder) RunCommands(ctx context.Context, names []string, o CommandOptions) (int, error) {
	var cmds []*vagga.Command
	for _, name := range names {
		cmd, ok := b.cfg.LookupCommand(name)
		if !ok {
			return 1, fmt.Errorf("%w %q in %s (it has: %s)", ErrNoCommand, name, b.cfg.File, strings.Join(b.cfg.CommandNames(), ", "))
		}
		cmds = append(cmds, cmd)
	}
	last := cmds[len(cmds)-1]
	parsed, err := parseCommandArgs(last, o.Args)
	if err != nil {
		return 0, err
	}
	var order []string
	for _, c := range cmds {
		order = append(order, c.Name)
	}
	if !o.NoPrerequisites {
		order = b.prerequisites(order...)
	}
	// Every container is built (or checked) before anything runs.
	for i, n := range order {
		if err := b.cfg.CheckCommand(n); err != nil {
			return 1, err
		}
		c := b.cfg.Commands[n]
		var only, exclude []string
		if i == len(order)-1 {
			only, exclude = parsed.only, parsed.exclude
		}
		for _, container := range b.commandContainers(c, only, exclude) {
			if err := b.prepare(ctx, container, o.NoBuild); err != nil {
				return ExitStale, err
			}
		}
	}
	if o.ContainersOnly {
		return 0, nil
	}
	for i, n := range order {
		p := parsedArgs{}
		if i == len(order)-1 {
			p = parsed
		}
		code, err := b.runOne(ctx, b.cfg.Commands[n], p, o)
		if err != nil || code != 0 {
			return code, err
		}
	}
	return 0, nil
}

// prepare builds container name when stale, or with noBuild reports it.
func (b *Builder) prepare(ctx context.Context, name string, noBuild bool) error {
	if noBuild && !b.opts.NoVersionCheck {
		stale, err := b.Stale(name)
		if err != nil {
			return err
		}
		if stale {
			return fmt.Errorf("container %q is out of date and --no-build is given", name)
		}
	}
	_, err := b.Build(ctx, name)
	return err
}

// Stale reports whether container name (or a container it needs) would
// run a step or write a root if it were built now.
func (b *Builder) Stale(name string) (bool, error) {
	if err := b.cfg.Check(name); err != nil {
		return false, err
	}
	for _, dep := range vagga.Dependencies(b.cfg.Containers[name]) {
		if stale, err := b.Stale(dep); err != nil || stale {
			return stale, err
		}
	}
	r, err := b.stackOf(name)
	if err != nil {
		return false, err
	}
	for _, k := range r.planned {
		if !b.store.Has(k) {
			return true, nil
		}
	}
	_, err = os.Stat(b.store.Root(name, r.Key))
	return err != nil, nil
}

// VersionHash is vagga's _version_hash: the key container name has now
// (of ovl's making: a hash of its steps and the project files they
// read), built or not.
func (b *Builder) VersionHash(name string) (string, error) {
	if _, ok := b.cfg.Containers[name]; !ok {
		return "", fmt.Errorf("%w %q in %s (it has: %s)", ErrNoContainer, name, b.cfg.File, strings.Join(b.cfg.ContainerNames(), ", "))
	}
	if err := b.cfg.Check(name); err != nil {
		return "", err
	}
	r, err := b.stackOf(name)
	if err != nil {
		return "", err
	}
	return r.Key, nil
}

// commandContainers lists the containers command c runs in: its own, or
// those of a !Supervise's children that only and exclude keep.
func (b *Builder) commandContainers(c *vagga.Command, only, exclude []string) []string {
	if c.Kind != vagga.KindSupervise {
		return []string{c.Container}
	}
	var out []string
	for _, n := range selectChildren(c, only, exclude) {
		if ch := c.Children[n].Container; !contains(out, ch) {
			out = append(out, ch)
		}
	}
	return out
}

// selectChildren lists the children of !Supervise c that only (when
// set) or exclude pick: by name or by one of their tags.
func selectChildren(c *vagga.Command, only, exclude []string) []string {
	match := func(name string, list []string) bool {
		for _, x := range list {
			if x == name || contains(c.Children[name].Tags, x) {
				return true
			}
		}
		return false
	}
	var out []string
	for _, n := range c.ChildNames() {
		if len(only) > 0 && !match(n, only) || len(only) == 0 && match(n, exclude) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// prerequisites orders commands names after what they need, as vagga's
// launcher does: prerequisites (recursively, each once, depth first)
// and the init-commands of persistent volumes not made yet; in a loop,
// the command named last.
func (b *Builder) prerequisites(names ...string) []string {
	return prerequisiteOrder(names, func(n string) []string {
		c, ok := b.cfg.LookupCommand(n)
		if !ok {
			return nil
		}
		var out []string
		add := func(cmd *vagga.Command, vols []vagga.Volume) {
			for _, p := range cmd.Prerequisites {
				if pc, ok := b.cfg.LookupCommand(p); ok {
					out = append(out, pc.Name)
				}
			}
			for _, v := range vols {
				if v.Kind == vagga.VolumePersistent && v.InitCommand != "" && !dirExists(b.volumesDir()+"/"+v.Name) && v.InitCommand != c.Name {
					out = append(out, v.InitCommand)
				}
			}
		}
		cmds := []*vagga.Command{c}
		for _, cn := range c.ChildNames() {
			cmds = append(cmds, c.Children[cn])
		}
		for _, cmd := range cmds {
			var vols []vagga.Volume
			if ct, ok := b.cfg.Containers[cmd.Container]; ok {
				vols = ct.Volumes
			}
			add(cmd, append(append([]vagga.Volume(nil), cmd.Volumes...), vols...))
		}
		return out
	})
}

// prerequisiteOrder is vagga's scan: for each command of src, in order,
// the commands deps says it needs, depth first, each at most once over
// the whole list (a command of src only as itself), a command on the
// current path not again (loops end there), then the command.
func prerequisiteOrder(src []string, deps func(string) []string) []string {
	visited := map[string]bool{}
	stackSet := map[string]bool{}
	for _, s := range src {
		visited[s], stackSet[s] = true, true
	}
	var out []string
	type frame struct {
		name string
		deps []string
	}
	for _, top := range src {
		stack := []frame{{top, deps(top)}}
		stackSet[top] = true
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if len(f.deps) > 0 {
				next := f.deps[0]
				f.deps = f.deps[1:]
				if stackSet[next] {
					continue
				}
				stack = append(stack, frame{next, deps(next)})
				stackSet[next] = true
				continue
			}
			stack = stack[:len(stack)-1]
			delete(stackSet, f.name)
			if !visited[f.name] {
				visited[f.name] = true
				out = append(out, f.name)
			}
		}
		out = append(out, top)
	}
	return out
}

// parsedArgs is what a command line gives a command.
type parsedArgs struct {
	env           []string // VAGGAOPT_*, VAGGACLI_*
	extra         []string // arguments passed on
	only, exclude []string // a !Supervise's --only, --exclude
}

// commandDocopt and superviseDocopt are the options vagga adds to a
// command's options: (docopt).
const (
	commandDocopt   = "Common options:\n  -h, --help           This help\n"
	superviseDocopt = "Supervise options:\n  -h, --help           This help\n  --only <tag> ...     Only run specified processes.\n                       This matches both names and tags\n  --exclude <tag> ...  Don't run specified processes.\n                       This excludes both names and tags"
)

// parseCommandArgs checks args against what cmd takes.
func parseCommandArgs(cmd *vagga.Command, args []string) (parsedArgs, error) {
	if cmd.Options != "" {
		desc := cmd.Description
		if desc == "" {
			desc = "vagga " + cmd.Name
		}
		extra := commandDocopt
		if cmd.Kind == vagga.KindSupervise {
			extra = superviseDocopt
		}
		d, err := vagga.ParseDocopt(desc + "\n\n" + cmd.Options + "\n" + extra + "\n")
		if err != nil {
			return parsedArgs{}, &ArgsError{Code: ExitBadOptions, Msg: fmt.Sprintf("Error parsing `options` in command %q: %v", cmd.Name, err)}
		}
		values, err := d.Parse(append([]string{cmd.Name}, args...))
		var de *vagga.DocoptError
		switch {
		case errors.Is(err, vagga.ErrDocoptHelp):
			return parsedArgs{}, &ArgsError{Code: 0, Msg: d.Doc}
		case errors.As(err, &de):
			return parsedArgs{}, &ArgsError{Code: ExitBadOptions, Msg: de.Msg + "\n" + d.Usage}
		case err != nil:
			return parsedArgs{}, err
		}
		var p parsedArgs
		for k, v := range vagga.OptionEnv(values) {
			p.env = append(p.env, k+"="+v)
		}
		sort.Strings(p.env)
		p.only, _ = values["--only"].([]string)
		p.exclude, _ = values["--exclude"].([]string)
		return p, nil
	}
	usage := "Usage:\n    vagga " + cmd.Name
	help := usage + "\n"
	if cmd.Description != "" {
		help += "\n" + cmd.Description + "\n"
	}
	if cmd.Kind == vagga.KindSupervise {
		return parseSuperviseArgs(args, usage, help)
	}
	if cmd.TakesArguments() {
		return parsedArgs{extra: args}, nil
	}
	for _, a := range args {
		if a == "-h" || a == "--help" {
			return parsedArgs{}, &ArgsError{Code: 0, Msg: help + "\nOptional arguments:\n  -h,--help             Show this help message and exit"}
		}
	}
	if len(args) > 0 {
		return parsedArgs{}, &ArgsError{Code: ExitBadArguments, Msg: fmt.Sprintf("%s\nvagga %s: Unexpected argument %q (the command takes no arguments: its run is a shell command line; set accepts-arguments: true to pass them)", usage, cmd.Name, args[0])}
	}
	return parsedArgs{}, nil
}

// parseSuperviseArgs reads a !Supervise's --only and --exclude (each
// followed by names or tags until the next option).
func parseSuperviseArgs(args []string, usage, help string) (parsedArgs, error) {
	var p parsedArgs
	var list *[]string
	for _, a := range args {
		switch {
		case a == "-h" || a == "--help":
			return parsedArgs{}, &ArgsError{Code: 0, Msg: help + "\nOptional arguments:\n  -h,--help             Show this help message and exit\n  --only PROCESS_NAME_OR_TAG [...]\n                        Only run specified processes\n  --exclude PROCESS_NAME_OR_TAG [...]\n                        Don't run specified processes"}
		case a == "--only":
			list = &p.only
		case a == "--exclude":
			list = &p.exclude
		case strings.HasPrefix(a, "-") || list == nil:
			return parsedArgs{}, &ArgsError{Code: ExitBadArguments, Msg: fmt.Sprintf("%s [--only NAME...] [--exclude NAME...]\nUnrecognized argument %q", usage, a)}
		default:
			*list = append(*list, a)
		}
	}
	return p, nil
}

// runOne runs one command (a !Command or a !Supervise) with what its
// command line gave it.
func (b *Builder) runOne(ctx context.Context, cmd *vagga.Command, p parsedArgs, o CommandOptions) (int, error) {
	checkInotifyLimit(cmd)
	env := append(append([]string(nil), o.Env...), p.env...)
	if cmd.Kind == vagga.KindSupervise {
		return b.supervise(ctx, cmd, p, env, o)
	}
	rc, commit, err := b.commandConfig(ctx, cmd, p.extra, o.Cwd, env)
	if err != nil {
		return 1, err
	}
	rc.IsolateNetwork = rc.IsolateNetwork || o.IsolateNetwork
	if rc.Decision, err = b.runDecision(ctx, o, cmd.Name, cmd.Container, rc.Layers); err != nil {
		return 1, err
	}
	rc.Stdin, rc.Stdout, rc.Stderr = o.Stdin, o.Stdout, o.Stderr
	stopBanner := b.banner(cmd, o.Stdout)
	res, err := runner.Run(ctx, rc)
	stopBanner()
	if err != nil {
		return runFailure(res, err)
	}
	if res.ExitCode == 0 {
		if commit != nil {
			if err := commit(); err != nil {
				return 1, fmt.Errorf("keep the volumes %q initialized: %w", cmd.Name, err)
			}
		}
		if cmd.Epilog != "" && o.Stdout != nil {
			fmt.Fprint(o.Stdout, cmd.Epilog)
		}
	}
	return res.ExitCode, nil
}

// runFailure turns an error of runner.Run into a *RunError with the
// status a shell would give.
func runFailure(res runner.Result, err error) (int, error) {
	code := 125
	switch {
	case errors.Is(err, runner.ErrCommandNotFound):
		code = 127
	case errors.Is(err, runner.ErrNotExecutable):
		code = 126
	}
	return code, &RunError{Code: code, Err: err}
}

// banner prints cmd's banner after its banner-delay, unless the
// returned stop comes first.
func (b *Builder) banner(cmd *vagga.Command, w io.Writer) (stop func()) {
	if cmd.Banner == "" || w == nil {
		return func() {}
	}
	if cmd.BannerDelay == 0 {
		fmt.Fprintln(w, cmd.Banner)
		return func() {}
	}
	t := time.AfterFunc(time.Duration(cmd.BannerDelay)*time.Second, func() { fmt.Fprintln(w, cmd.Banner) })
	return func() { t.Stop() }
}

// checkInotifyLimit warns, as vagga does, when fs.inotify.max_user_watches
// is below what cmd expects.
func checkInotifyLimit(cmd *vagga.Command) {
	if cmd.InotifyLimit == 0 {
		return
	}
	data, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches")
	if err != nil {
		return
	}
	if have, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && have < cmd.InotifyLimit {
		slog.Warn(fmt.Sprintf("command %q expects fs.inotify.max_user_watches of at least %d, this system has %d: raise it with sysctl fs.inotify.max_user_watches=%d",
			cmd.Name, cmd.InotifyLimit, have, cmd.InotifyLimit))
	}
}
