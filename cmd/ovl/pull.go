package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/oci"
)

func init() { register(pullNewCmd) }

// pullOptions are `ovl pull`'s parsed flags and arguments.
type pullOptions struct {
	Ref      string
	Dir      string
	Registry registryOptions
	JSON     bool
}

func pullNewCmd(g *globalOptions) *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull [flags] REF DIR",
		Short: "Pull an OCI image from a registry into a plain container root",
		Long: `pull downloads the image REF (REGISTRY/REPOSITORY[:TAG|@DIGEST]; for
linux on this machine's architecture when REF is a multi-platform index) and
writes DIR/root, its layers flattened into one plain directory (whiteouts
applied; owners, modes, times and xattrs kept where this user may set them),
and DIR/image.json, its config. DIR must not exist. Every blob is checked
against its digest and every layer against the config's diff_id; on any
error DIR is removed. Images 'ovl push' wrote and images of other tools
(gzip or plain tar layers) are both read.

'ovl run DIR/root -- CMD' runs a command in it.`,
		Example: `  ovl pull registry.example/team/app:v1 ./app-image
  ovl run ./app-image/root -- /bin/sh -c 'ls /opt/app'
  ovl pull --insecure-registry localhost:5000/app ./app-image`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Ref, o.Dir, o.JSON = args[0], args[1], g.JSON
			return pullRun(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	registryFlags(cmd.Flags(), &o.Registry)
	return cmd
}

func pullRun(ctx context.Context, o *pullOptions, stdout io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	res, err := oci.PullImage(ctx, o.Ref, o.Dir, layer.NamespaceFor(userns.Privileged()), o.Registry.remote())
	if err != nil {
		return err
	}
	if o.JSON {
		return writeJSON(stdout, res)
	}
	_, err = fmt.Fprintf(stdout, "%s@%s: %d layers, %s downloaded: %s\n", res.Ref, res.Digest, res.Layers, buildHumanBytes(res.Bytes), res.Root)
	return err
}
