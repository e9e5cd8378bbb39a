package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func init() { register(installVaggaAliasNewCmd) }

// installVaggaAliasOptions are `ovl install-vagga-alias`'s arguments.
type installVaggaAliasOptions struct {
	Dir   string
	Force bool
}

func installVaggaAliasNewCmd(g *globalOptions) *cobra.Command {
	o := &installVaggaAliasOptions{}
	cmd := &cobra.Command{
		Use:   "install-vagga-alias DIR",
		Short: "Make DIR/vagga, a symlink to ovl that reads vagga's command line",
		Long: `install-vagga-alias makes DIR/vagga a symlink to this ovl binary. Invoked as
vagga, ovl reads vagga's command line (vagga's docs/commandline.rst) in the
project around the current directory:

  vagga                       the project's commands (vagga.yaml's commands:)
  vagga COMMAND [ARGS...]     run a command, building its container when stale
  vagga _build [--force] CONTAINER
  vagga _run [-W] CONTAINER CMD [ARGS...]
  vagga _clean --old|--unused|--tmp|--transient|--everything|--volumes [-n]
  vagga _list, _version_hash [-s] CONTAINER, _check_overlayfs_support,
        _base_dir, _relative_work_dir
  vagga -E NAME=VALUE, -e NAME, --no-build, --no-version-check,
        --no-prerequisites, --containers-only, -m CMD1 CMD2

docs/vagga.md lists every option of vagga and what ovl does with it. Put DIR
on your PATH (or give a directory already on it, e.g. ~/.local/bin). An
existing DIR/vagga is left alone unless --force.`,
		Example: `  ovl install-vagga-alias ~/.local/bin
  vagga _build app && vagga test`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Dir = args[0]
			return installVaggaAliasRun(o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.Force, "force", false, "replace an existing DIR/vagga")
	return cmd
}

func installVaggaAliasRun(o *installVaggaAliasOptions, w io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install-vagga-alias: find this binary: %w", err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return fmt.Errorf("install-vagga-alias: %w", err)
	}
	if fi, err := os.Stat(o.Dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("install-vagga-alias: %s is not a directory (make it, or give one on your PATH)", o.Dir)
	}
	link := filepath.Join(o.Dir, "vagga")
	if _, err := os.Lstat(link); err == nil {
		if !o.Force {
			return fmt.Errorf("install-vagga-alias: %s exists; give --force to replace it", link)
		}
		if err := os.Remove(link); err != nil {
			return fmt.Errorf("install-vagga-alias: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("install-vagga-alias: %w", err)
	}
	if err := os.Symlink(self, link); err != nil {
		return fmt.Errorf("install-vagga-alias: %w", err)
	}
	fmt.Fprintf(w, "%s -> %s\n", link, self)
	return nil
}
