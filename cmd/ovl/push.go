package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/oci"
)

func init() { register(pushNewCmd) }

// pushOptions are `ovl push`'s parsed flags and arguments.
type pushOptions struct {
	Container string
	Ref       string
	Config    string
	Backend   string
	Registry  registryOptions
	JSON      bool
}

func pushNewCmd(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push [flags] CONTAINER REF",
		Short: "Push a built container to a registry as a runnable OCI image",
		Long: `push builds CONTAINER of vagga.yaml if it is stale (as 'ovl build' does) and
pushes its root to REF (REGISTRY/REPOSITORY[:TAG], tag 'latest' by default)
as an OCI image podman, skopeo, umoci or any runtime can use: one layer, the
flattened root with owners, modes, times and xattrs, and a config with the
container's environment (!Env steps and environ) and /work, where vagga runs
commands, as the working directory. The image has no default command.

A layer the registry has already is not uploaded again. Credentials come from
--authfile, $REGISTRY_AUTH_FILE, podman's auth.json or ~/.docker/config.json.`,
		Example: `  ovl push app registry.example/team/app:v1
  ovl push --insecure-registry app localhost:5000/app
  podman run --rm registry.example/team/app:v1 /bin/sh -c 'ls /opt/app'`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Container, o.Ref, o.JSON = args[0], args[1], g.JSON
			return pushRun(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	buildConfigFlag(f, &o.Config)
	backendFlag(f, &o.Backend)
	registryFlags(f, &o.Registry)
	return cmd
}

func pushRun(ctx context.Context, o *pushOptions, stdout, stderr io.Writer) error {
	img, err := containerImage(ctx, o.Config, o.Backend, o.Container, stderr)
	if err != nil {
		return err
	}
	res, err := oci.PushImage(ctx, o.Ref, img.root, img.config, img.tmpDir, o.Registry.remote())
	if err != nil {
		return err
	}
	return printImage(res, o.JSON, stdout)
}

// builtImage is a built container as an image's root and config.
type builtImage struct {
	root, tmpDir string
	config       oci.ImageConfig
}

// containerImage builds container name of the project (only what is
// stale; warnings and a failed step's output on stderr) and returns its
// root and the config of its image.
func containerImage(ctx context.Context, config, backendName, name string, stderr io.Writer) (builtImage, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := buildLoad(config)
	if err != nil {
		return builtImage{}, err
	}
	d, err := buildDecision(ctx, cfg, backendName)
	if err != nil {
		return builtImage{}, err
	}
	progress := &buildProgress{w: stderr, quiet: true}
	r, err := builder.New(cfg, builder.Options{Decision: d, Run: builder.RunnerFunc(d, cfg.Dir),
		Events: progress.event, Output: stderr}).Build(ctx, name)
	if err != nil {
		return builtImage{}, err
	}
	tmp, err := registryTmp(cfg)
	if err != nil {
		return builtImage{}, err
	}
	env := append([]string(nil), r.BuildEnv...)
	for _, v := range cfg.Containers[name].Environ {
		env = append(env, v.String())
	}
	return builtImage{root: r.Root, tmpDir: tmp, config: oci.ImageConfig{
		Env:        env,
		WorkingDir: "/work",
		Labels:     map[string]string{"dev.ovl.container": name, "dev.ovl.key": r.Key},
	}}, nil
}

// printImage says what push or export wrote.
func printImage(res oci.ImageResult, asJSON bool, stdout io.Writer) error {
	if asJSON {
		return writeJSON(stdout, res)
	}
	how := "uploaded"
	if !res.Uploaded {
		how = "already there"
	}
	_, err := fmt.Fprintf(stdout, "%s@%s (%s): layer %s, %s, %s\n", res.Ref, res.Digest, res.Platform, res.Layer, buildHumanBytes(res.Size), how)
	return err
}
