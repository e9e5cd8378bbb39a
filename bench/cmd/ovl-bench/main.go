// Command ovl-bench measures ovl's backends side by side with kernel
// overlay, fuse-overlayfs, unionfs-fuse and cp -a, over one tree, and
// prints a table; it also writes JSON, CSV, Markdown and an SVG chart.
// `make bench` and `make bench-quick` run it. It needs root to mount and
// to drop caches.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spf13/pflag"

	"ovl/bench"
	"ovl/internal/reexec"
)

// options are ovl-bench's flags.
type options struct {
	tree        string
	quick       bool
	workdir     string
	out         string
	ovl         string
	reps        int
	warmup      int
	json        bool
	csv         bool
	contestants string
	workloads   string
	keep        bool
}

func main() {
	if reexec.Init() {
		return
	}
	o := options{}
	fs := pflag.NewFlagSet("ovl-bench", pflag.ContinueOnError)
	fs.StringVar(&o.tree, "tree", "/usr/local/go", "the lower tree the workloads run over (copied once into the work directory)")
	fs.BoolVar(&o.quick, "quick", false, "a small part of the tree, a 64 MiB file, 3 repetitions: about a minute")
	fs.StringVar(&o.workdir, "workdir", defaultWorkdir(), "where the fixture, the mounts and the results go (a real disk, not tmpfs)")
	fs.StringVar(&o.out, "out", "", "directory for report.{json,csv,md,svg} (default WORKDIR/results)")
	fs.StringVar(&o.ovl, "ovl", "bin/ovl", "the ovl binary for the user-facing workloads (run, build)")
	fs.IntVar(&o.reps, "reps", 0, "counted repetitions per workload (default 5, 3 with --quick)")
	fs.IntVar(&o.warmup, "warmup", 1, "warm-up repetitions per workload, not counted")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON on stdout instead of the table")
	fs.BoolVar(&o.csv, "csv", false, "print the report as CSV on stdout instead of the table")
	fs.StringVar(&o.contestants, "contestants", "", "only contestants whose name matches this regexp")
	fs.StringVar(&o.workloads, "workloads", "", "only workloads whose name matches this regexp")
	fs.BoolVar(&o.keep, "keep-fixture", true, "keep the fixture for the next run (it is reused when the tree is unchanged)")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: ovl-bench [flags]\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "ovl-bench:", err)
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ovl-bench:", err)
		os.Exit(1)
	}
}

func defaultWorkdir() string {
	if os.Geteuid() == 0 {
		return "/var/tmp/ovl-bench"
	}
	return fmt.Sprintf("/var/tmp/ovl-bench-%d", os.Geteuid())
}

func run(o options) (err error) {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	cfg := bench.FixtureConfig{Tree: o.tree, BigSize: 1 << 30, UntarFiles: 11000, AppendFiles: 2000, Layers: 20, LayerFiles: 100, StormFiles: 3000}
	opt := bench.RunOptions{Warmup: o.warmup, Reps: 5, SlowReps: 3, Slow: 2 * time.Second, Progress: logf}
	fixDir := filepath.Join(o.workdir, "fixture")
	if o.quick {
		cfg = bench.FixtureConfig{Tree: o.tree, MaxFiles: 1200, MaxFileSize: 256 << 10, BigSize: 64 << 20, UntarFiles: 1000, AppendFiles: 200, Layers: 20, LayerFiles: 20, StormFiles: 500}
		opt.Reps, opt.SlowReps, opt.Slow = 3, 2, time.Second
		fixDir = filepath.Join(o.workdir, "fixture-quick")
	}
	if o.reps > 0 {
		opt.Reps = o.reps
	}
	if o.out == "" {
		o.out = filepath.Join(o.workdir, "results")
	}
	if o.ovl != "" {
		if o.ovl, err = filepath.Abs(o.ovl); err == nil {
			if _, serr := os.Stat(o.ovl); serr != nil {
				logf("no ovl binary at %s (make build): the user-facing workloads will be unavailable", o.ovl)
				o.ovl = ""
			}
		}
	}
	cre, err := regexp.Compile(o.contestants)
	if err != nil {
		return fmt.Errorf("--contestants: %w", err)
	}
	wre, err := regexp.Compile(o.workloads)
	if err != nil {
		return fmt.Errorf("--workloads: %w", err)
	}

	jan := &bench.Janitor{}
	ctx, stop := jan.OnSignal(context.Background())
	defer stop()
	defer func() {
		if cerr := jan.Clean(); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
	}()
	if err := os.MkdirAll(o.workdir, 0o755); err != nil {
		return err
	}
	if n, err := bench.SweepMounts(o.workdir); err != nil {
		return err
	} else if n > 0 {
		logf("unmounted %d mounts an earlier run left under %s", n, o.workdir)
	}
	scratch := filepath.Join(o.workdir, "scratch")
	if err := os.RemoveAll(scratch); err != nil {
		exec.Command("chmod", "-R", "u+rwx", scratch).Run()
		if err := os.RemoveAll(scratch); err != nil {
			return fmt.Errorf("clear %s: %w", scratch, err)
		}
	}
	defer os.RemoveAll(scratch)

	fix, err := bench.PrepareFixture(ctx, fixDir, cfg, logf)
	if err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	if !o.keep {
		defer os.RemoveAll(fixDir)
	}
	machine := bench.DescribeMachine(o.workdir)

	var cs []*bench.Contestant
	for _, c := range append(bench.OvlContestants(), bench.Peers(exec.LookPath, os.Geteuid() == 0)...) {
		if cre.MatchString(c.Name) {
			cs = append(cs, c)
		}
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	for _, c := range cs {
		c.Probe(ctx, scratch)
		if c.Unavailable != nil {
			logf("%s: unavailable: %v", c.Name, c.Unavailable)
		}
	}
	var ws []bench.Workload
	for _, w := range bench.Workloads(fix, bench.FioInstalled()) {
		if wre.MatchString(w.Name) {
			ws = append(ws, w)
		}
	}
	env, err := bench.NewEnv(fix, jan, scratch, o.ovl)
	if err != nil {
		return err
	}
	results, runErr := bench.Run(ctx, env, ws, cs, opt)
	rep := bench.NewReport(start, machine, fix, opt, cs, ws, results)
	rep.Took = time.Since(start)
	rep.Interrupted = runErr != nil
	paths, werr := writeFiles(rep, o.out)

	var stdout io.Writer = os.Stdout
	switch {
	case o.json:
		rep.WriteJSON(stdout)
	case o.csv:
		rep.WriteCSV(stdout)
	default:
		fmt.Fprintln(stdout)
		rep.WriteTable(stdout)
	}
	for _, p := range paths {
		fmt.Fprintf(os.Stderr, "wrote %s\n", p)
	}
	if svg := paths["svg"]; svg != "" {
		fmt.Fprintf(os.Stderr, "chart: %s\n", svg)
	}
	fmt.Fprintf(os.Stderr, "took %v\n", time.Since(start).Round(time.Second))
	if runErr != nil {
		return fmt.Errorf("interrupted: %w (the report holds what was measured)", runErr)
	}
	return werr
}

// writeFiles writes the report in every format into dir.
func writeFiles(rep *bench.Report, dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	var errs []error
	for _, f := range []struct {
		ext   string
		write func(io.Writer) error
	}{{"json", rep.WriteJSON}, {"csv", rep.WriteCSV}, {"md", rep.WriteMarkdown}, {"svg", rep.WriteSVG}} {
		p := filepath.Join(dir, "report."+f.ext)
		fh, err := os.Create(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = f.write(fh)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", p, err))
			continue
		}
		paths[f.ext] = p
	}
	return paths, errors.Join(errs...)
}
