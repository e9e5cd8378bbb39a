package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/selector"
)

func init() { register(checkOverlayfsNewCmd) }

// checkOverlayfsNewCmd is vagga's `_check_overlayfs_support`: one word
// about overlay support, as vagga means it: "supported" (exit 0) when an
// overlay backend (native or FUSE) works for this user's runs here,
// "unsupported" (exit 1) when only the copy fallback is left, which works
// too, by copying (vagga's own way before overlays). Whether ovl works at
// all is `ovl check`'s exit status.
func checkOverlayfsNewCmd(g *globalOptions) *cobra.Command {
	var prober selector.ProbeFunc // tests inject one through checkOverlayfsRun
	return &cobra.Command{
		Use:   "_check_overlayfs_support",
		Short: "Print vagga's supported/unsupported for overlay (see 'ovl check')",
		Long: `_check_overlayfs_support answers vagga's question: does overlay work here?
It prints "supported" and exits 0 when kernel overlay or ovl's FUSE union
works for this user's runs (probed as 'ovl check' does, in the layer
directory it chooses), and "unsupported" with exit 1 when only the copy
backend is left. Copy works everywhere, by copying: 'ovl check' exits 0 then.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return checkOverlayfsRun(cmd.Context(), prober, cmd.OutOrStdout())
		},
	}
}

func checkOverlayfsRun(ctx context.Context, prober selector.ProbeFunc, w io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	_, d, err := selector.Inspect(ctx, selector.Options{Backend: "auto", Project: cwdProject(), Prober: prober})
	if err != nil {
		fmt.Fprintln(w, "unsupported")
		return &exitError{code: 1, msg: err.Error()}
	}
	if !d.Overlay() {
		fmt.Fprintln(w, "unsupported")
		return &exitError{code: 1}
	}
	fmt.Fprintln(w, "supported")
	return nil
}
