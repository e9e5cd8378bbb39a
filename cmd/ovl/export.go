package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/oci"
)

func init() { register(exportNewCmd) }

// exportOptions are `ovl export`'s parsed flags and arguments.
type exportOptions struct {
	Container string
	Layout    string
	Tag       string
	Config    string
	Backend   string
	JSON      bool
}

func exportNewCmd(g *globalOptions) *cobra.Command {
	o := &exportOptions{}
	cmd := &cobra.Command{
		Use:   "export [flags] CONTAINER --oci-layout DIR",
		Short: "Write a built container as an OCI image into an OCI image layout directory",
		Long: `export builds CONTAINER of vagga.yaml if it is stale and writes the same
image 'ovl push' would push (one layer: the flattened root; a config with the
container's environment and /work as the working directory) into the OCI
image layout DIR, created if missing (other images in it are kept), tagged
--tag (default: the container's name). No registry is involved: skopeo,
umoci, podman and buildah read the directory.`,
		Example: `  ovl export app --oci-layout /tmp/app-image
  skopeo copy oci:/tmp/app-image:app docker-archive:/tmp/app.tar
  umoci unpack --image /tmp/app-image:app /tmp/app-bundle
  podman run --rm oci:/tmp/app-image:app /bin/sh -c 'ls /opt/app'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Container, o.JSON = args[0], g.JSON
			if o.Layout == "" {
				return fmt.Errorf("export: give the image layout directory with --oci-layout DIR")
			}
			if o.Tag == "" {
				o.Tag = o.Container
			}
			return exportRun(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Layout, "oci-layout", "", "the OCI image layout directory to write (required)")
	f.StringVar(&o.Tag, "tag", "", "the image's tag in the layout (default: the container's name)")
	buildConfigFlag(f, &o.Config)
	backendFlag(f, &o.Backend)
	return cmd
}

func exportRun(ctx context.Context, o *exportOptions, stdout, stderr io.Writer) error {
	img, err := containerImage(ctx, o.Config, o.Backend, o.Container, stderr)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	res, err := oci.ExportImage(ctx, o.Layout, o.Tag, img.root, img.config, img.tmpDir)
	if err != nil {
		return err
	}
	return printImage(res, o.JSON, stdout)
}
