package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/bench"
)

func init() { register(benchNewCmd) }

func benchNewCmd(g *globalOptions) *cobra.Command {
	o := &bench.Options{}
	if self, err := os.Executable(); err == nil {
		o.Ovl = self
	}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure ovl's backends against kernel overlay, fuse-overlayfs, unionfs-fuse and cp -a",
		Long: `bench runs the same workloads over one tree with every ovl backend (native,
fuse with and without passthrough, copy) and every peer that is installed
(kernel overlay mounted directly, fuse-overlayfs, unionfs-fuse -o cow, and
cp -a where a copy is today's answer), interleaved so that a busy machine
slows all of them alike. It prints medians, spreads and ratios to kernel
overlay and to fuse-overlayfs, and writes report.json, report.csv,
report.md and report.svg (a chart) to WORKDIR/results.

The tree is copied once into WORKDIR (a real disk) and reused while it is
unchanged. A peer that is not installed, or a backend that does not work
here, is reported as unavailable with the reason. Needs root (mounts, and
dropping caches for the cold workloads). Ctrl-C stops it and unmounts
everything.`,
		Example: `  ovl bench --quick                      # about 5 minutes
  ovl bench --tree ~/src/project          # your own tree, ~20-30 minutes for 15k files
  ovl bench --workloads 'grep|find' --contestants 'native|fuse'
  ovl bench --requests --workloads 'first pass' --contestants 'ovl fuse$|fuse-overlayfs'   # FUSE requests per workload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON = g.JSON
			if err := bench.Main(*o, cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			return nil
		},
	}
	o.AddFlags(cmd.Flags(), false)
	return cmd
}
