package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/runner"
)

func init() { register(cleanNewCmd) }

// cleanOptions are `ovl clean`'s parsed flags.
type cleanOptions struct {
	JSON         bool
	DryRun       bool
	Transient    bool
	TransientDir string
	Build        buildCleanOptions // --old, --unused-layers, --everything (build.go)
}

func cleanNewCmd(g *globalOptions) *cobra.Command {
	o := &cleanOptions{}
	cmd := &cobra.Command{
		Use:   "clean [--transient] [--old] [--unused-layers] [--everything] [-n]",
		Short: "Remove leftovers of killed runs, old builds and unused layers",
		Long: `clean removes ovl's leftovers; say which with one or more flags.

--transient removes the transient directories (NAME.PID) of runs that are
over: the copy backend's copies of a container that a killed 'ovl run' could
not remove. Directories of runs whose process is still alive are kept.

The build flags act on the project's .vagga (vagga.yaml found from the
current directory, or --config), as vagga's _clean does:
  --old            container roots no .vagga/NAME points to any more, and
                   unfinished layers and roots of builds no longer running;
  --unused-layers  layers no container of vagga.yaml uses in its current
                   form (edited steps, removed containers);
  --everything     the whole .vagga directory, sealed layers too.

With -n nothing is removed: what would be is listed (with sizes for the
build flags).`,
		Example: `  ovl clean --transient -n
  ovl clean --transient --transient-dir .vagga/.transient
  ovl clean --old --unused-layers
  ovl clean --everything -n`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON = g.JSON
			return cleanRun(o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Transient, "transient", false, "remove transient directories of runs that are over")
	f.BoolVarP(&o.DryRun, "dry-run", "n", false, "only list what would be removed")
	buildCleanFlags(f, &o.Build)
	f.StringVar(&o.TransientDir, "transient-dir", "", "where the transient directories are (default: ovl's state directory)")
	return cmd
}

// cleanResult is what `ovl clean --json` prints.
type cleanResult struct {
	DryRun  bool     `json:"dry_run"`
	Removed []string `json:"removed"`
}

func cleanRun(o *cleanOptions, w io.Writer) error {
	if o.Build.any() {
		if err := buildClean(&o.Build, o.DryRun, o.JSON, w); err != nil || !o.Transient {
			return err
		}
	}
	if !o.Transient {
		return fmt.Errorf("clean: say what to clean (--transient, --old, --unused-layers or --everything)")
	}
	res := cleanResult{DryRun: o.DryRun, Removed: []string{}}
	dir := o.TransientDir
	if dir == "" {
		d, err := runner.DefaultTransientDir()
		if err != nil {
			return err
		}
		dir = d
	}
	removed, err := runner.CleanTransient(dir, o.DryRun)
	res.Removed = append(res.Removed, removed...)
	if o.JSON {
		if jerr := writeJSON(w, res); jerr != nil {
			return jerr
		}
	} else {
		verb := "removed"
		if o.DryRun {
			verb = "would remove"
		}
		for _, p := range removed {
			fmt.Fprintln(w, verb, p)
		}
	}
	if err != nil {
		return fmt.Errorf("clean --transient: %w", err)
	}
	return nil
}
