package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/oci"
	"github.com/ovl-dev/ovl/vagga"
)

// registryOptions are the flags of every command that talks to a
// registry (build's cache, push, pull).
type registryOptions struct {
	Insecure bool
	AuthFile string
	Timeout  time.Duration
}

// registryFlags adds the registry flags to f.
func registryFlags(f *pflag.FlagSet, o *registryOptions) {
	f.BoolVar(&o.Insecure, "insecure-registry", false, "talk to the registry over plain http (a registry on loopback or in a CI service container)")
	f.StringVar(&o.AuthFile, "authfile", "", "registry credentials (default: $REGISTRY_AUTH_FILE, podman's auth.json, ~/.docker/config.json)")
	f.DurationVar(&o.Timeout, "registry-timeout", oci.DefaultTimeout, "give up on a registry request that gets no answer, or a transfer that stalls, for this long")
}

func (o registryOptions) remote() oci.RemoteOptions {
	return oci.RemoteOptions{PlainHTTP: o.Insecure, AuthFile: o.AuthFile, Timeout: o.Timeout}
}

// cacheOptions are `ovl build`'s build cache flags.
type cacheOptions struct {
	From     []string
	To       string
	Registry registryOptions
}

// cacheFlags adds --cache-from and --cache-to (and the registry flags) to f.
func cacheFlags(f *pflag.FlagSet, o *cacheOptions) {
	f.StringArrayVar(&o.From, "cache-from", nil, "look steps up in this build cache before running them (REGISTRY/REPO[:TAG]; repeatable, first match wins)")
	f.StringVar(&o.To, "cache-to", "", "push every step's layer the build cache lacks, and its index, to REGISTRY/REPO[:TAG]")
	registryFlags(f, &o.Registry)
}

// newStepCache returns the build cache the flags ask for, or nil.
func newStepCache(o cacheOptions, cfg *vagga.Config, oneLayer bool, ns layer.Namespace) (*oci.Cache, error) {
	if len(o.From) == 0 && o.To == "" {
		return nil, nil
	}
	if oneLayer {
		return nil, fmt.Errorf("build: --cache-from and --cache-to share step layers; they need --cache-each-step (the default)")
	}
	tmp, err := registryTmp(cfg)
	if err != nil {
		return nil, err
	}
	return oci.NewCache(oci.CacheOptions{From: o.From, To: o.To, Remote: o.Registry.remote(),
		TmpDir: tmp, Namespace: ns})
}

// flushStepCache waits for the build cache's uploads and pushes its
// index, then says what it pushed; a failure is one warning line, never
// a failed build.
func flushStepCache(ctx context.Context, c *oci.Cache, asJSON bool, stdout, stderr io.Writer) {
	if c == nil {
		return
	}
	rep, err := c.Flush(ctx)
	if err != nil {
		if asJSON {
			writeJSONLine(stdout, builder.Event{Status: builder.StatusWarning, Detail: err.Error()})
			return
		}
		fmt.Fprintf(stderr, "ovl: warning: %v (the build itself is fine)\n", err)
		return
	}
	if rep.Ref == "" {
		return
	}
	if asJSON {
		writeJSONLine(stdout, struct {
			Cache oci.PushReport `json:"cache_push"`
		}{rep})
		return
	}
	fmt.Fprintf(stderr, "cache %s: %d layers uploaded (%s), %d already there, %d steps listed before; the index has %d steps\n",
		rep.Ref, rep.Uploaded, buildHumanBytes(rep.Bytes), rep.Present, rep.Indexed, rep.Entries)
}

// registryTmp is where blobs wait for their upload or their unpacking:
// the project's .vagga/.layers/.tmp, with the builder's unfinished
// layers (ovl clean --old removes what a killed ovl left there).
func registryTmp(cfg *vagga.Config) (string, error) {
	tmp := filepath.Join(cfg.Dir, ".vagga", ".layers", ".tmp")
	return tmp, os.MkdirAll(tmp, 0o700)
}
