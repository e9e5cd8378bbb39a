package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spf13/pflag"
)

// Options are the settings of a bench run, as ovl-bench and `ovl bench`
// take them on the command line.
type Options struct {
	Tree        string
	Quick       bool
	Workdir     string
	Out         string
	Ovl         string
	Reps        int
	Warmup      int
	JSON        bool
	CSV         bool
	Contestants string
	Workloads   string
	KeepFixture bool
	// Requests counts the FUSE requests of one extra repetition per
	// workload and FUSE contestant (kernel tracepoints; root).
	Requests bool
	// FromJSON, when set, renders a saved report.json again instead of
	// measuring: the table on stdout and the files in Out.
	FromJSON string
}

// AddFlags binds o to flags in fs. withJSON adds --json; leave it out
// where the command line already has a global --json bound to o.JSON.
func (o *Options) AddFlags(fs *pflag.FlagSet, withJSON bool) {
	fs.StringVar(&o.Tree, "tree", "/usr/local/go", "the lower tree the workloads run over (copied once into the work directory)")
	fs.BoolVar(&o.Quick, "quick", false, "part of the tree (1,200 files up to 256 KiB), a 64 MiB file, 3 repetitions: about 5 minutes")
	fs.StringVar(&o.Workdir, "workdir", DefaultWorkdir(), "where the fixture, the mounts and the results go (a real disk, not tmpfs)")
	fs.StringVar(&o.Out, "out", "", "directory for report.{json,csv,md,svg} (default WORKDIR/results)")
	fs.StringVar(&o.Ovl, "ovl", o.Ovl, "the ovl binary for the user-facing workloads (run, build)")
	fs.IntVar(&o.Reps, "reps", 0, "counted repetitions per workload (default 5, 3 with --quick)")
	fs.IntVar(&o.Warmup, "warmup", 1, "warm-up repetitions per workload, not counted")
	if withJSON {
		fs.BoolVar(&o.JSON, "json", false, "print the report as JSON on stdout instead of the table")
	}
	fs.BoolVar(&o.CSV, "csv", false, "print the report as CSV on stdout instead of the table")
	fs.StringVar(&o.Contestants, "contestants", "", "only contestants whose name matches this regexp, e.g. 'native|kernel'")
	fs.StringVar(&o.Workloads, "workloads", "", "only workloads whose name matches this regexp, e.g. 'grep|find'")
	fs.BoolVar(&o.KeepFixture, "keep-fixture", true, "keep the fixture for the next run (it is reused while the tree and settings are unchanged)")
	fs.BoolVar(&o.Requests, "requests", false, "also count the FUSE requests (LOOKUP, GETATTR, READ...) of one extra repetition per workload and FUSE contestant, through the kernel's fuse tracepoints")
	fs.StringVar(&o.FromJSON, "from-json", "", "render a saved report.json again (table, Markdown, SVG) instead of measuring")
}

// DefaultWorkdir is /var/tmp/ovl-bench for root, /var/tmp/ovl-bench-UID
// for others: on disk, since /tmp may be a tmpfs.
func DefaultWorkdir() string {
	if os.Geteuid() == 0 {
		return "/var/tmp/ovl-bench"
	}
	return fmt.Sprintf("/var/tmp/ovl-bench-%d", os.Geteuid())
}

// configs returns the fixture and run settings of o.
func (o *Options) configs() (FixtureConfig, RunOptions, string) {
	cfg := FixtureConfig{Tree: o.Tree, BigSize: 1 << 30, UntarFiles: 11000, AppendFiles: 2000,
		Layers: 20, LayerFiles: 100, StormFiles: 1000}
	// Repetitions thin out for slow contestants so that `make bench` stays
	// under 15 minutes on a busy 2-core machine.
	opt := RunOptions{Warmup: o.Warmup, Reps: 5, SlowReps: 3, Slow: 500 * time.Millisecond,
		VerySlowReps: 2, VerySlow: 4 * time.Second}
	fixDir := filepath.Join(o.Workdir, "fixture")
	if o.Quick {
		cfg = FixtureConfig{Tree: o.Tree, MaxFiles: 1200, MaxFileSize: 256 << 10, BigSize: 64 << 20,
			UntarFiles: 500, AppendFiles: 200, Layers: 20, LayerFiles: 20, StormFiles: 500}
		opt.Reps, opt.SlowReps, opt.Slow = 3, 2, time.Second
		fixDir = filepath.Join(o.Workdir, "fixture-quick")
	}
	if o.Reps > 0 {
		opt.Reps = o.Reps
	}
	return cfg, opt, fixDir
}

// Main runs the bench as o says: it prepares the fixture, probes every
// contestant, runs every workload, prints the table (or JSON, or CSV) on
// stdout and progress on stderr, and writes the report files. Every
// mount is undone before it returns, also on SIGINT or SIGTERM.
func Main(o Options, stdout, stderr io.Writer) (err error) {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	cfg, opt, fixDir := o.configs()
	opt.Progress = logf
	if o.Out == "" {
		o.Out = filepath.Join(o.Workdir, "results")
	}
	if o.FromJSON != "" {
		rep, err := ReadReport(o.FromJSON)
		if err != nil {
			return err
		}
		return o.output(rep, stdout, stderr, start)
	}
	if o.Ovl != "" {
		if o.Ovl, err = filepath.Abs(o.Ovl); err != nil {
			return err
		}
		if _, serr := os.Stat(o.Ovl); serr != nil {
			logf("no ovl binary at %s (make build): the user-facing workloads will be unavailable", o.Ovl)
			o.Ovl = ""
		}
	}
	cre, err := regexp.Compile(o.Contestants)
	if err != nil {
		return fmt.Errorf("--contestants: %w", err)
	}
	wre, err := regexp.Compile(o.Workloads)
	if err != nil {
		return fmt.Errorf("--workloads: %w", err)
	}

	jan := &Janitor{}
	ctx, stop := jan.OnSignal(context.Background())
	defer stop()
	defer func() {
		if cerr := jan.Clean(); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
	}()
	if err := os.MkdirAll(o.Workdir, 0o755); err != nil {
		return err
	}
	if n, err := SweepMounts(o.Workdir); err != nil {
		return err
	} else if n > 0 {
		logf("unmounted %d mounts an earlier run left under %s", n, o.Workdir)
	}
	scratch := filepath.Join(o.Workdir, "scratch")
	if err := removeAll(scratch); err != nil {
		return fmt.Errorf("clear %s: %w", scratch, err)
	}
	defer removeAll(scratch)

	fix, err := PrepareFixture(ctx, fixDir, cfg, logf)
	if err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	if !o.KeepFixture {
		defer os.RemoveAll(fixDir)
	}
	machine := DescribeMachine(o.Workdir)

	var cs []*Contestant
	for _, c := range append(OvlContestants(o.Ovl), Peers(exec.LookPath, os.Geteuid() == 0)...) {
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
	var ws []Workload
	for _, w := range Workloads(fix, FioInstalled()) {
		if wre.MatchString(w.Name) {
			ws = append(ws, w)
		}
	}
	env, err := NewEnv(fix, jan, scratch, o.Ovl)
	if err != nil {
		return err
	}
	env.Logf = logf
	if o.Requests {
		tr, err := newReqTracer()
		if err != nil {
			return fmt.Errorf("--requests: %w", err)
		}
		defer tr.Close()
		env.Requests = tr
	}
	results, runErr := Run(ctx, env, ws, cs, opt)
	rep := NewReport(start, machine, fix, opt, cs, ws, results)
	rep.Took = time.Since(start)
	rep.Interrupted = runErr != nil
	werr := o.output(rep, stdout, stderr, start)
	if runErr != nil {
		return fmt.Errorf("interrupted: %w (the report holds what was measured before)", runErr)
	}
	return werr
}

// output prints rep as o asks and writes its files.
func (o *Options) output(rep *Report, stdout, stderr io.Writer, start time.Time) error {
	paths, werr := rep.WriteFiles(o.Out)
	switch {
	case o.JSON:
		rep.WriteJSON(stdout)
	case o.CSV:
		rep.WriteCSV(stdout)
	default:
		fmt.Fprintln(stdout)
		rep.WriteTable(stdout)
	}
	for _, ext := range []string{"json", "csv", "md"} {
		if p := paths[ext]; p != "" {
			fmt.Fprintf(stderr, "wrote %s\n", p)
		}
	}
	if svg := paths["svg"]; svg != "" {
		fmt.Fprintf(stderr, "chart: %s\n", svg)
	}
	fmt.Fprintf(stderr, "took %v\n", time.Since(start).Round(time.Second))
	return werr
}

// ReadReport loads a report written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}

// WriteFiles writes the report in every format into dir, as
// report.json, report.csv, report.md and report.svg, and returns the
// paths written by extension.
func (r *Report) WriteFiles(dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := map[string]string{}
	var errs []error
	for _, f := range []struct {
		ext   string
		write func(io.Writer) error
	}{{"json", r.WriteJSON}, {"csv", r.WriteCSV}, {"md", r.WriteMarkdown}, {"svg", r.WriteSVG}} {
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
