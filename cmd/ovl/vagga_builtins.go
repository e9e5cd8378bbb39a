package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/runner"
)

// vaggaBuiltins are the built-in commands of vagga that ovl has.
var vaggaBuiltins = map[string]func(ctx context.Context, v *vaggaRun, args []string) error{
	"_build":             vaggaBuild,
	"_run":               vaggaRunContainer,
	"_clean":             vaggaClean,
	"_list":              vaggaList,
	"_version_hash":      vaggaVersionHash,
	"_base_dir":          vaggaBaseDir,
	"_relative_work_dir": vaggaRelativeWorkDir,
}

// vaggaRefusedBuiltins are vagga's other built-in commands, with why ovl
// does not have them.
var vaggaRefusedBuiltins = map[string]string{
	"_init_storage_dir": "ovl keeps a project's containers in its .vagga (storage-dir is a vagga setting)",
	"_pack_image":       "pack the root yourself: tar -C .vagga/NAME -c .",
	"_push_image":       "there is no image cache to push to (image-cache-url is refused too)",
	"_update_symlinks":  "ovl makes no command symlinks (symlink-name has no effect)",
	"_verify":           "ovl keeps no index of the container's files (vagga's index-all-images)",
	"_hardlink":         "ovl links a child container's root to its parent's already; nothing more to link",
	"_build_shell":      "use `ovl build NAME --shell-before-step N`",
	"_dump_config":      "",
	"_create_netns":     "ovl's commands share the host's network",
	"_destroy_netns":    "ovl's commands share the host's network",
	"_run_in_netns":     "ovl's commands share the host's network",
	"_network":          "ovl's commands share the host's network",
	"_capsule":          "vagga's capsule downloads its own tools",
	"_compgen":          "",
	"_help":             "",
}

// vaggaFlags reads the flags of a built-in command up to its first
// argument: known maps a flag to what it sets; the rest are its
// arguments. A flag it does not know is a usage error (vagga's 122).
func vaggaFlags(cmd string, args []string, known map[string]*bool, values map[string]*string) ([]string, error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			return args[i:], nil
		}
		if a == "--" {
			return args[i+1:], nil
		}
		if p, ok := known[a]; ok {
			*p = true
			continue
		}
		name, val, hasVal := strings.Cut(a, "=")
		if p, ok := values[name]; ok {
			if !hasVal {
				if i+1 >= len(args) {
					return nil, &exitError{code: vaggaExitUsage, msg: fmt.Sprintf("vagga %s: option %s requires an argument", cmd, name)}
				}
				i++
				val = args[i]
			}
			*p = val
			continue
		}
		return nil, &exitError{code: vaggaExitUsage, msg: fmt.Sprintf("vagga %s: unknown option %q (see vagga %s --help)", cmd, a, cmd)}
	}
	return nil, nil
}

// vaggaBuild is `vagga _build [--force] [--cache-each-step] CONTAINER...`.
func vaggaBuild(ctx context.Context, v *vaggaRun, args []string) error {
	var force, each, noImage, help bool
	names, err := vaggaFlags("_build", args, map[string]*bool{"--force": &force, "--cache-each-step": &each,
		"--no-image-download": &noImage, "-h": &help, "--help": &help}, nil)
	if err != nil {
		return err
	}
	if help {
		fmt.Fprintln(v.stdout, "Usage:\n    vagga _build [--force] [--cache-each-step] CONTAINER\n\nBuilds the container (ovl keeps every step as a layer: --cache-each-step is always on).")
		return nil
	}
	if len(names) == 0 {
		return &exitError{code: vaggaExitUsage, msg: "Usage: vagga _build [--force] CONTAINER"}
	}
	progress := &buildProgress{w: v.stderr}
	b, err := v.builder(ctx, builder.Options{Force: force, Events: progress.event})
	if err != nil {
		return &exitError{code: vaggaExitCommand, msg: err.Error()}
	}
	for _, n := range names {
		if _, err := b.Build(ctx, n); err != nil {
			return &exitError{code: vaggaExitCommand, msg: err.Error()}
		}
	}
	return nil
}

// vaggaRunContainer is `vagga _run [-W] CONTAINER CMD ARGS...`: the
// command in the container, as vagga's _run runs it.
func vaggaRunContainer(ctx context.Context, v *vaggaRun, args []string) error {
	var writable, noBuild, noVersion, noImage, help bool
	rest, err := vaggaFlags("_run", args, map[string]*bool{"-W": &writable, "--writable": &writable, "--writeable": &writable,
		"--no-build": &noBuild, "--no-version-check": &noVersion, "--no-image-download": &noImage, "-h": &help, "--help": &help}, nil)
	if err != nil {
		return err
	}
	if help {
		fmt.Fprintln(v.stdout, "Usage:\n    vagga _run [-W] CONTAINER COMMAND [ARG ...]\n\nRuns arbitrary command inside the container\n\n  -W,--writeable   a writable root whose changes are thrown away at exit")
		return nil
	}
	if len(rest) < 2 {
		return &exitError{code: vaggaExitUsage, msg: "Usage: vagga _run [-W] CONTAINER COMMAND [ARG ...]"}
	}
	v.g.NoBuild = v.g.NoBuild || noBuild || noVersion
	v.g.NoVersionCheck = v.g.NoVersionCheck || noVersion
	b, err := v.builder(ctx, builder.Options{})
	if err != nil {
		return &exitError{code: vaggaExitCommand, msg: err.Error()}
	}
	if v.g.NoBuild && !v.g.NoVersionCheck {
		if stale, err := b.Stale(rest[0]); err != nil || stale {
			if err == nil {
				err = fmt.Errorf("container %q is out of date and --no-build is given", rest[0])
			}
			return &exitError{code: builder.ExitStale, msg: err.Error()}
		}
	}
	rc, err := b.ContainerRun(ctx, rest[0], rest[1:], v.cwd, writable)
	if err != nil {
		return &exitError{code: vaggaExitCommand, msg: err.Error()}
	}
	env, err := execEnv(v.g.Environ, v.g.UseEnv)
	if err != nil {
		return &exitError{code: vaggaExitConfig, msg: err.Error()}
	}
	rc.Env = append(rc.Env, env...)
	d, err := buildDecision(ctx, v.cfg, "")
	if err != nil {
		return &exitError{code: vaggaExitCommand, msg: err.Error()}
	}
	rc.Decision, rc.IsolateNetwork = d, v.g.IsolateNetwork
	rc.Stdin, rc.Stdout, rc.Stderr = v.stdin, v.stdout, v.stderr
	res, err := runner.Run(ctx, rc)
	return runExitStatus(res, err, "_run", fmt.Sprintf("_run %s (%s backend)", rest[0], d.Backend))
}

// vaggaClean is `vagga _clean`: one or more of --tmp, --old, --unused,
// --transient, --everything, --unused-volumes, --volumes; -n lists what
// would go.
func vaggaClean(ctx context.Context, v *vaggaRun, args []string) error {
	var tmp, old, unused, transient, everything, unusedVolumes, volumes, global, dryRun, help bool
	var atLeast string
	rest, err := vaggaFlags("_clean", args, map[string]*bool{"--tmp": &tmp, "--tmp-folders": &tmp, "--old": &old,
		"--old-containers": &old, "--unused": &unused, "--transient": &transient, "--everything": &everything,
		"--unused-volumes": &unusedVolumes, "--volumes": &volumes, "--global": &global, "-n": &dryRun, "--dry-run": &dryRun,
		"-h": &help, "--help": &help}, map[string]*string{"--at-least": &atLeast})
	switch {
	case err != nil:
		return err
	case help:
		fmt.Fprintln(v.stdout, `Usage:
    vagga _clean [OPTIONS]

Performs various cleanup tasks

  --tmp,--tmp-folders   Clean temporary containers (failed builds)
  --old,--old-containers
                        Clean old versions of containers (those which doesn't
                        have a symlink in .vagga)
  --unused              Clean unused containers, or versions thereof
  --transient           Clean unneeded transient folders
  --everything          Clean whole .vagga folder
  --unused-volumes      Remove !Persistent volumes that are not used by any
                        command or container of the current config
  --volumes             Remove all !Persistent volumes
  -n,--dry-run          Dry run. Don't delete everything, just print`)
		return nil
	case len(rest) > 0:
		return &exitError{code: 1, msg: fmt.Sprintf("vagga _clean takes no arguments (%q)", rest[0])}
	case global:
		return &exitError{code: 2, msg: "The --global flag is only meaningful if you configure storage-dir in settings (ovl has no storage-dir)"}
	case atLeast != "":
		return &exitError{code: 1, msg: "--at-least is not supported by ovl: it keeps no time of a container's last use; --unused removes the versions the config does not use"}
	case !(tmp || old || unused || transient || everything || unusedVolumes || volumes):
		return &exitError{code: 1, msg: "vagga _clean: say what to clean (--tmp, --old, --unused, --transient, --everything, --unused-volumes, --volumes)"}
	}
	b := builder.New(v.cfg, builder.Options{})
	store := b.Store()
	var removed []builder.Removed
	steps := []struct {
		on bool
		fn func(bool) ([]builder.Removed, error)
	}{
		{tmp, store.CleanTmp},
		{old, store.CleanOld},
		{unused, b.CleanUnused},
		{transient, func(dry bool) ([]builder.Removed, error) {
			paths, err := runner.CleanTransient(filepath.Join(store.Dir, ".transient"), dry)
			var out []builder.Removed
			for _, p := range paths {
				out = append(out, builder.Removed{Path: p})
			}
			return out, err
		}},
		{unusedVolumes, func(dry bool) ([]builder.Removed, error) { return b.CleanVolumes(true, dry) }},
		{volumes, func(dry bool) ([]builder.Removed, error) { return b.CleanVolumes(false, dry) }},
		{everything, store.CleanEverything},
	}
	for _, s := range steps {
		if !s.on {
			continue
		}
		r, err := s.fn(dryRun)
		removed = append(removed, r...)
		if err != nil {
			vaggaPrintRemoved(v, removed, dryRun)
			return &exitError{code: 3, msg: "Error cleaning up: " + err.Error()}
		}
	}
	vaggaPrintRemoved(v, removed, dryRun)
	return nil
}

func vaggaPrintRemoved(v *vaggaRun, removed []builder.Removed, dryRun bool) {
	for _, r := range removed {
		if dryRun {
			fmt.Fprintf(v.stdout, "Would remove %q\n", r.Path)
		} else {
			fmt.Fprintf(v.stdout, "Removed %q\n", r.Path)
		}
	}
}

// vaggaList is `vagga _list`: the commands (or --containers), one a
// line with its description.
func vaggaList(ctx context.Context, v *vaggaRun, args []string) error {
	var containers, all, builtin, hidden, zsh, noAliases, verbose, help bool
	rest, err := vaggaFlags("_list", args, map[string]*bool{"--containers": &containers, "-A": &all, "--all": &all,
		"--builtin": &builtin, "--hidden": &hidden, "--zsh": &zsh, "--no-aliases": &noAliases, "-v": &verbose,
		"--verbose": &verbose, "-h": &help, "--help": &help}, nil)
	switch {
	case err != nil:
		return err
	case help:
		fmt.Fprintln(v.stdout, "Usage:\n    vagga _list [--containers] [-A] [--builtin] [--hidden] [--zsh] [--no-aliases] [-v]")
		return nil
	case len(rest) > 0:
		return &exitError{code: vaggaExitUsage, msg: fmt.Sprintf("vagga _list takes no arguments (%q)", rest[0])}
	}
	source := func(file string) string {
		if file == "" || file == v.cfg.File {
			return v.cfg.File
		}
		return file
	}
	if containers {
		for _, n := range v.cfg.ContainerNames() {
			fmt.Fprintln(v.stdout, n)
			if verbose {
				fmt.Fprintf(v.stdout, "%19s (from %q)\n", " ", source(v.cfg.Containers[n].Pos.File))
			}
		}
		return nil
	}
	type entry struct{ name, desc, src string }
	var entries []entry
	for _, n := range v.cfg.CommandNames() {
		c := v.cfg.Commands[n]
		names := []string{n}
		if !noAliases {
			for _, a := range c.Aliases {
				if _, own := v.cfg.Commands[a]; !own {
					names = append(names, a)
				}
			}
		}
		for _, name := range names {
			entries = append(entries, entry{name, strings.TrimRight(c.Description, "\n"), source(c.Pos.File)})
		}
	}
	if builtin || all || hidden {
		for _, b := range [][2]string{{"_build", "Build a container"}, {"_run", "Run arbitrary command, optionally building container"},
			{"_clean", "Clean containers and build artifacts"}, {"_list", "List of built-in commands"},
			{"_base_dir", "Display a directory which contains vagga.yaml"},
			{"_relative_work_dir", "Display a relative path from the current working directory to the directory containing vagga.yaml"},
			{"_version_hash", "Print the version hash of a container"},
			{"_check_overlayfs_support", "Print whether overlay works here: supported or unsupported"}} {
			entries = append(entries, entry{b[0], b[1], "<builtins>"})
		}
	}
	for _, e := range entries {
		if strings.HasPrefix(e.name, "_") && !(hidden || all || builtin && e.src == "<builtins>") {
			continue
		}
		if zsh {
			first, _, _ := strings.Cut(e.desc, "\n")
			fmt.Fprintf(v.stdout, "%s:%s\n", e.name, first)
			continue
		}
		line := e.name
		if e.desc != "" {
			line += vaggaPad(e.name, 19, 20) + strings.ReplaceAll(e.desc, "\n", "\n"+strings.Repeat(" ", 20))
		}
		fmt.Fprintln(v.stdout, line)
		if verbose {
			fmt.Fprintf(v.stdout, "%19s (from %q)\n", " ", e.src)
		}
	}
	return nil
}

// vaggaVersionHash is `vagga _version_hash [-s] CONTAINER`: the key of
// the container as the config and the project's files stand.
func vaggaVersionHash(ctx context.Context, v *vaggaRun, args []string) error {
	var short, debug, dump, fd3, help bool
	rest, err := vaggaFlags("_version_hash", args, map[string]*bool{"-s": &short, "--short": &short,
		"--debug-versioning": &debug, "--dump-version-data": &dump, "--fd3": &fd3, "-h": &help, "--help": &help}, nil)
	switch {
	case err != nil:
		return err
	case help:
		fmt.Fprintln(v.stdout, "Usage:\n    vagga _version_hash [-s] CONTAINER\n\nPrints the version hash of the container (ovl's key of it)")
		return nil
	case debug || dump || fd3:
		return &exitError{code: vaggaExitUsage, msg: "--debug-versioning, --dump-version-data and --fd3 are not supported by ovl: `ovl build --json` shows the key of each step"}
	case len(rest) != 1:
		return &exitError{code: vaggaExitUsage, msg: "Usage: vagga _version_hash [-s] CONTAINER"}
	}
	b := builder.New(v.cfg, builder.Options{})
	h, err := b.VersionHash(rest[0])
	if err != nil {
		var pe *builder.StepError
		if errors.As(err, &pe) {
			return &exitError{code: 29, msg: err.Error()}
		}
		return &exitError{code: vaggaExitCommand, msg: err.Error()}
	}
	if short {
		h = h[:8]
	}
	fmt.Fprintln(v.stdout, h)
	return nil
}

// vaggaBaseDir is `vagga _base_dir`: the project directory.
func vaggaBaseDir(ctx context.Context, v *vaggaRun, args []string) error {
	fmt.Fprintln(v.stdout, v.cfg.Dir)
	return nil
}

// vaggaRelativeWorkDir is `vagga _relative_work_dir`: where the current
// directory is in the project ("" at its top).
func vaggaRelativeWorkDir(ctx context.Context, v *vaggaRun, args []string) error {
	rel, err := filepath.Rel(v.cfg.Dir, v.cwd)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		rel = ""
	}
	fmt.Fprintln(v.stdout, rel)
	return nil
}
