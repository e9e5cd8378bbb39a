// Command ovl-bench measures ovl's backends side by side with kernel
// overlay, fuse-overlayfs, unionfs-fuse and cp -a over one tree, prints a
// table, and writes JSON, CSV, Markdown and an SVG chart. `make bench`
// and `make bench-quick` run it; `ovl bench` is the same for a user's own
// tree. It needs root to mount and to drop caches.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/ovl-dev/ovl/bench"
	"github.com/ovl-dev/ovl/internal/reexec"
)

func main() {
	if reexec.Init() {
		return
	}
	o := bench.Options{Ovl: "bin/ovl"}
	fs := pflag.NewFlagSet("ovl-bench", pflag.ContinueOnError)
	o.AddFlags(fs, true)
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
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ovl-bench: unexpected argument %q (give the tree with --tree DIR)\n", fs.Arg(0))
		os.Exit(2)
	}
	if err := bench.Main(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ovl-bench:", err)
		os.Exit(1)
	}
}
