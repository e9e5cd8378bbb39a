package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/selector"
	"github.com/ovl-dev/ovl/vagga"
)

func init() { register(buildNewCmd) }

// buildOptions are `ovl build`'s parsed flags and arguments.
type buildOptions struct {
	Containers    []string
	Config        string
	CacheEachStep bool
	Force         bool
	ShellBefore   int
	Backend       string
	Quiet         bool
	JSON          bool
	Cache         cacheOptions // --cache-from, --cache-to (registry.go)
}

func buildNewCmd(g *globalOptions) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build [flags] CONTAINER...",
		Short: "Build containers of vagga.yaml, a cached layer per step",
		Long: `build builds containers from the vagga.yaml of the project (found in the
current directory or a parent), as vagga's _build does, without network: the
steps !Tar (a local tarball), !Container, !Sh, !Cmd, !Text, !Copy, !Env,
!Remove, !EnsureDir, !EmptyDir and !Depends.

Every step has a key: a hash of the step before it, the step as written and
the content of the project files it reads. A step whose layer is in
.vagga/.layers is not run again; so an unchanged container builds in
milliseconds, and after an edit only the edited step and those after it run.
Command steps run in the container (project bound at /work) on the layers
below them, mounted with the backend 'ovl check' reports for builds (or
--backend); file steps write their layer directly. The backend is probed in
the project's .vagga, where the layers are: with the project on a filesystem
kernel overlay refuses uppers on (a container's overlay root), builds use
FUSE (with /dev/fuse) or copy, and 'ovl check' in the project says so and
what would be faster.

With --cache-each-step (the default) each step's changes are a sealed layer
of their own: a failed build continues from the failed step, and ovl prints
how to open a shell in the state just before it. --cache-each-step=false
writes all steps of a container into one layer, as vagga does.

The result is one plain directory, as vagga lays it out: .vagga/NAME is a
symlink to .vagga/.roots/NAME.HASH8/root, replaced atomically.

With --json, stdout is a stream of compact JSON objects, one per line
(NDJSON), for CI to read as they come: the events of the steps (status
cached, running, done or failed) and phases (squash, root), then a summary
per container (key, root, layers, steps run, backend). The commands' output is then kept, and shown on stderr only if
the build fails.

With --cache-from REF a step missing from .vagga/.layers is looked up in
that build cache (an OCI registry) and its layer pulled instead of running
the step; with --cache-to REF every step's layer the cache lacks is pushed
there with an index of step keys, for the next machine. A registry that is
down, slow or serves a corrupt layer costs one warning line: the steps run
here, the build does not fail.

Exit status: 0 built; 1 a step failed or the config is wrong; 125 a shell
before a step could not be started.`,
		Example: `  ovl build base
  ovl build --force app
  ovl build --json app > events.ndjson   # one JSON object per line
  ovl build app --shell-before-step 5
  ovl build app --cache-from registry.example/proj/cache:main --cache-to registry.example/proj/cache:main
  ovl build app --insecure-registry --cache-from localhost:5000/proj/cache`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Containers, o.JSON = args, g.JSON
			if o.ShellBefore > 0 && len(args) != 1 {
				return fmt.Errorf("build: --shell-before-step needs exactly one container")
			}
			return buildRun(cmd.Context(), o, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	buildConfigFlag(f, &o.Config)
	f.BoolVar(&o.CacheEachStep, "cache-each-step", true, "keep every step as a layer of its own (false: one layer per container)")
	f.BoolVar(&o.Force, "force", false, "rebuild the containers' steps even if cached")
	f.IntVar(&o.ShellBefore, "shell-before-step", 0, "build up to step N-1 and open a shell in that state instead of building")
	backendFlag(f, &o.Backend)
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "print nothing but errors (and a failed step's output)")
	cacheFlags(f, &o.Cache)
	return cmd
}

// buildConfigFlag adds --config, the vagga.yaml buildLoad reads, to f.
func buildConfigFlag(f *pflag.FlagSet, p *string) {
	f.StringVarP(p, "config", "f", "", "the vagga.yaml (default: ./vagga.yaml or in a parent directory)")
}

// buildLoad finds and reads the project's vagga.yaml.
func buildLoad(config string) (*vagga.Config, error) {
	if config == "" {
		cwd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if config, err = vagga.Find(cwd); err != nil {
			return nil, fmt.Errorf("%w (run ovl in a project, or give --config)", err)
		}
	}
	return vagga.Load(config)
}

// buildDecision asks the selector for the backend builds of the project
// use, probing on the project's filesystem, where their layers are.
func buildDecision(ctx context.Context, cfg *vagga.Config, name string) (selector.Decision, error) {
	dir := filepath.Join(cfg.Dir, ".vagga")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return selector.Decision{}, err
	}
	return selector.Select(ctx, buildSelectOptions(cfg, name))
}

// buildSelectOptions is what buildDecision asks the selector.
func buildSelectOptions(cfg *vagga.Config, name string) selector.Options {
	return selector.Options{Backend: name, LayerDir: filepath.Join(cfg.Dir, ".vagga"), Project: cfg.Dir}
}

// buildRecheck answers a build that failed other than by a step's
// command (a mount, a run's start) with backend d: a backend chosen from
// the probe cache may have outlived what the cache knew, so ovl probes
// again, once (selector.Recheck says so), and err says which backend
// the next build uses. The build is not run again here.
func buildRecheck(ctx context.Context, cfg *vagga.Config, name string, d selector.Decision, err error) error {
	var ee *builder.ExitError
	if errors.As(err, &ee) || ctx.Err() != nil {
		return err
	}
	if now, changed, rerr := selector.Recheck(ctx, buildSelectOptions(cfg, name), d, err); rerr == nil && changed {
		return fmt.Errorf("%w\nthe next build uses the %s backend (ovl probed again)", err, now.Backend)
	}
	return err
}

// buildProgress prints events: progress lines, or one JSON object per
// line (NDJSON) for --json.
type buildProgress struct {
	w     io.Writer
	json  bool
	quiet bool
}

func (p *buildProgress) event(e builder.Event) {
	switch {
	case p.json:
		writeJSONLine(p.w, e)
	case p.quiet && e.Status != builder.StatusWarning || e.Status == builder.StatusRunning:
	default:
		fmt.Fprintln(p.w, e.String())
	}
}

func buildRun(ctx context.Context, o *buildOptions, stdin io.Reader, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := buildLoad(o.Config)
	if err != nil {
		return err
	}
	d, err := buildDecision(ctx, cfg, o.Backend)
	if err != nil {
		return err
	}
	progress := &buildProgress{w: stderr, quiet: o.Quiet}
	if o.JSON {
		progress = &buildProgress{w: stdout, json: true}
	}
	// Command output goes to stderr as it comes; with --quiet or --json
	// it is kept, and shown only if the build fails.
	var kept bytes.Buffer
	var output io.Writer = stderr
	if o.Quiet || o.JSON {
		output = &kept
	}
	opts := builder.Options{
		OneLayer: !o.CacheEachStep, Force: o.Force, Decision: d,
		Run: builder.RunnerFunc(d, cfg.Dir), Events: progress.event, Output: output, ConfigArg: o.Config,
	}
	cache, err := newStepCache(o.Cache, cfg, opts.OneLayer, d.Namespace)
	if err != nil {
		return err
	}
	if cache != nil {
		opts.Cache = cache
		defer flushStepCache(ctx, cache, o.JSON, stdout, stderr)
	}
	if bars := buildNewBars(stderr); bars != nil && !o.Quiet && !o.JSON {
		opts.Progress = bars.start
		defer bars.wait()
	}
	eng := builder.New(cfg, opts)
	if o.ShellBefore > 0 {
		if err := eng.Shell(ctx, o.Containers[0], o.ShellBefore, stdin, stdout, stderr); err != nil {
			var ee *builder.ExitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.Code}
			}
			return err
		}
		return nil
	}
	for _, name := range o.Containers {
		r, err := eng.Build(ctx, name)
		if err != nil {
			if kept.Len() > 0 {
				stderr.Write(kept.Bytes())
			}
			return buildRecheck(ctx, cfg, o.Backend, d, err)
		}
		switch {
		case o.JSON:
			writeJSONLine(stdout, buildSummary{Container: name, Key: r.Key, Root: r.Root, Layers: len(r.Layers), Ran: r.Ran, Pulled: r.Pulled, Backend: d.Backend})
		case !o.Quiet:
			rel, _ := filepath.Rel(cfg.Dir, filepath.Join(cfg.Dir, ".vagga", name))
			pulled := ""
			if r.Pulled > 0 {
				pulled = fmt.Sprintf(", %d pulled", r.Pulled)
			}
			fmt.Fprintf(stdout, "%s: built, %s run%s, %s (%s backend): %s\n", name, plural(r.Ran, "step"), pulled, plural(len(r.Layers), "layer"), d.Backend, rel)
		}
	}
	return nil
}

// plural writes n with noun, in the plural unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// buildSummary is the last JSON line `ovl build --json` prints per
// container.
type buildSummary struct {
	Container string `json:"container"`
	Key       string `json:"key"`
	Root      string `json:"root"`
	Layers    int    `json:"layers"`
	Ran       int    `json:"ran"`
	Pulled    int    `json:"pulled"` // steps whose layer came from --cache-from
	Backend   string `json:"backend"`
}

// buildCleanOptions are the flags `ovl clean` has for builds.
type buildCleanOptions struct {
	Old, UnusedLayers, Everything bool
	Config                        string
}

func (o *buildCleanOptions) any() bool { return o.Old || o.UnusedLayers || o.Everything }

// buildCleanFlags adds the build flags to `ovl clean`.
func buildCleanFlags(f *pflag.FlagSet, o *buildCleanOptions) {
	f.BoolVar(&o.Old, "old", false, "remove container roots no .vagga/NAME points to, and unfinished builds")
	f.BoolVar(&o.UnusedLayers, "unused-layers", false, "remove layers no container of vagga.yaml uses any more")
	f.BoolVar(&o.Everything, "everything", false, "remove the project's whole .vagga directory (sealed layers too)")
	f.StringVar(&o.Config, "config", "", "with --old, --unused-layers, --everything: the vagga.yaml (default: found from here)")
}

// buildCleanResult is what `ovl clean --json` prints for the build flags.
type buildCleanResult struct {
	DryRun  bool              `json:"dry_run"`
	Removed []builder.Removed `json:"removed"`
	Bytes   int64             `json:"bytes"`
}

// buildClean removes old roots, unused layers or everything of the
// project's .vagga, listing each with its size.
func buildClean(o *buildCleanOptions, dryRun, asJSON bool, w io.Writer) error {
	cfg, err := buildLoad(o.Config)
	if err != nil {
		return err
	}
	removed, err := builder.New(cfg, builder.Options{}).Clean(builder.CleanOptions{
		Old: o.Old, UnusedLayers: o.UnusedLayers, Everything: o.Everything, DryRun: dryRun})
	res := buildCleanResult{DryRun: dryRun, Removed: append([]builder.Removed{}, removed...)}
	for _, r := range res.Removed {
		res.Bytes += r.Bytes
	}
	if asJSON {
		if jerr := writeJSON(w, res); jerr != nil {
			return jerr
		}
	} else {
		verb := "removed"
		if dryRun {
			verb = "would remove"
		}
		for _, r := range res.Removed {
			fmt.Fprintf(w, "%s %s (%s)\n", verb, r.Path, buildHumanBytes(r.Bytes))
		}
		fmt.Fprintf(w, "%s %d paths, %s in all\n", verb, len(res.Removed), buildHumanBytes(res.Bytes))
	}
	if err != nil {
		return fmt.Errorf("clean: %w", err)
	}
	return nil
}

func buildHumanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// buildBars draws a progress bar per long copy on a terminal.
type buildBars struct {
	p *mpb.Progress
}

// buildNewBars returns bars drawing on w, or nil if w is not a terminal.
func buildNewBars(w io.Writer) *buildBars {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &buildBars{p: mpb.New(mpb.WithOutput(f), mpb.WithWidth(40))}
}

// start is builder.Options.Progress.
func (b *buildBars) start(what string, total int64) builder.Progress {
	bar := b.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(what, decor.WC{W: 32, C: decor.DindentRight})),
		mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f"), decor.Name(" "), decor.Elapsed(decor.ET_STYLE_GO)),
		mpb.BarRemoveOnComplete())
	return &buildBar{bar: bar}
}

// wait lets the last bar finish drawing.
func (b *buildBars) wait() {
	if b != nil {
		b.p.Wait()
	}
}

type buildBar struct{ bar *mpb.Bar }

func (b *buildBar) Add(n int64) { b.bar.IncrInt64(n) }
func (b *buildBar) Done()       { b.bar.SetTotal(-1, true) }
