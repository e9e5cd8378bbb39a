package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ovl-dev/ovl/vagga"
)

// globalOptions are the flags every subcommand has.
type globalOptions struct {
	Debug bool
	JSON  bool
}

// subcommands are added by each subcommand's file in its init, so that
// adding a verb touches one file.
var subcommands []func(*globalOptions) *cobra.Command

func register(f func(*globalOptions) *cobra.Command) { subcommands = append(subcommands, f) }

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "ovl",
		Short: "Overlay layer stacks on any Linux kernel, as root or as an ordinary user",
		Long: `ovl mounts stacks of directory layers with the fastest backend that works
here: kernel overlayfs (as root, or as an ordinary user in a user namespace),
ovl's own FUSE union filesystem, or a plain copy as the last resort.
Run 'ovl check' to see which one this machine and this user get, and why.`,
		SilenceUsage:     true,
		SilenceErrors:    true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) { setupLogging(g.Debug) },
	}
	root.PersistentFlags().BoolVar(&g.Debug, "debug", false, "log diagnostics to stderr")
	root.PersistentFlags().BoolVar(&g.JSON, "json", false, "print machine-readable JSON instead of text")
	for _, f := range subcommands {
		root.AddCommand(f(g))
	}
	return root
}

// setupLogging sends ovl's diagnostics to stderr: warnings, and with
// debug (--debug) everything.
func setupLogging(debug bool) {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
}

// backendFlag adds --backend, which every subcommand that mounts a stack
// has, to f.
func backendFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "backend", "", "native, fuse or copy (default: $OVL_BACKEND, else what 'ovl check' picks)")
}

// layerDirFlag adds --layer-dir, which check, mount and run have, to f.
func layerDirFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "layer-dir", "", "the directory whose filesystem holds the layers and scratch state, where the backend probe mounts "+
		"(default: $OVL_STATE_DIR, else ovl's state directory, or a tmpfs when kernel overlay refuses uppers there; builds use the project's .vagga)")
}

// cwdProject is the vagga project of the working directory (where its
// vagga.yaml is), "" outside one.
func cwdProject() string {
	cwd, err := os.Getwd()
	if err != nil {
		return ""
	}
	file, err := vagga.Find(cwd)
	if err != nil {
		return ""
	}
	return filepath.Dir(file)
}

// writeJSON is the one JSON exporter of the command line: indented, one
// value, newline-terminated.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLine is writeJSON for streams: one compact JSON object per
// line (NDJSON), so that a reader such as CI can handle each event as it
// comes.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
