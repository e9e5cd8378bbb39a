package selector

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/fusefs"
	"github.com/ovl-dev/ovl/internal/paths"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// Options say what Select needs and where to probe.
type Options struct {
	// LayerDir is a directory on the filesystem that will hold the
	// layers; the probes mount there. Default: paths.StateDir().
	LayerDir string
	// CacheDir holds the cached reports. Default: paths.RuntimeDir().
	CacheDir string
	// Refresh probes again even when a cached report exists.
	Refresh bool
	// NoCache neither reads nor writes the cache.
	NoCache bool
	// Backend forces a backend by name; "" takes $OVL_BACKEND, and ""
	// or "auto" there lets the selector choose.
	Backend string
	// Spec is the stack to be mounted, when known.
	Spec *layer.Spec
	// HostMount: the mount must appear in the caller's mount namespace
	// (see Request.HostMount).
	HostMount bool
	// Prober replaces the real probes (tests). Default: Probe.
	Prober ProbeFunc
}

// Inspect probes (from the cache when it can) and chooses, without making
// a backend: what `ovl check` shows. The error is for a report that could
// not be made, or a forced backend that cannot work (wrapping
// backend.ErrUnavailable); the report and decision are filled when they
// could be.
func Inspect(ctx context.Context, o Options) (*Report, Decision, error) {
	req := request(o)
	r, err := report(ctx, o)
	if err != nil {
		return nil, Decision{}, err
	}
	d, err := Choose(r, req)
	return r, d, err
}

// Select probes (cached), chooses, and returns the chosen backend. It is
// the only place ovl chooses a backend: runs, builds and the command line
// call it. A forced backend that cannot work gives an error wrapping
// backend.ErrUnavailable, saying why.
func Select(ctx context.Context, o Options) (backend.Backend, Decision, error) {
	req := request(o)
	if req.Force == backend.Copy { // works everywhere: nothing to probe
		d, _ := Choose(&Report{}, req)
		b, err := ByName(backend.Copy)
		return b, d, err
	}
	r, err := report(ctx, o)
	if err != nil {
		return nil, Decision{}, err
	}
	d, err := Choose(r, req)
	if err != nil {
		return nil, d, err
	}
	b, err := ByName(d.Backend)
	return b, d, err
}

// ByName returns the backend called name (backend.Native, FUSE or Copy),
// without asking whether it works here: for a caller that already knows.
func ByName(name string) (backend.Backend, error) {
	switch name {
	case backend.Native:
		return native.New(), nil
	case backend.FUSE:
		return fusefs.NewBackend(), nil
	case backend.Copy:
		return copyback.New(), nil
	}
	return nil, fmt.Errorf("unknown backend %q: choose one of %s", name, strings.Join(backend.Names, ", "))
}

func request(o Options) Request {
	req := Request{Force: o.Backend, ForcedBy: "--backend", Spec: o.Spec, HostMount: o.HostMount}
	if req.Force == "" {
		req.Force, req.ForcedBy = forcedFromEnv(), "OVL_BACKEND"
	}
	if req.Force == "" || req.Force == "auto" {
		req.Force, req.ForcedBy = "", ""
	}
	return req
}

func report(ctx context.Context, o Options) (*Report, error) {
	dir := o.LayerDir
	if dir == "" {
		d, err := paths.StateDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("layer dir %s: not an existing directory (create it, or choose another with --layer-dir)", dir)
	}
	probe := o.Prober
	if probe == nil {
		probe = Probe
	}
	if o.NoCache {
		return probe(ctx, dir)
	}
	cacheDir := o.CacheDir
	if cacheDir == "" {
		d, err := paths.RuntimeDir()
		if err != nil {
			return nil, err
		}
		cacheDir = d
	}
	return cachedProbe(ctx, cacheDir, dir, o.Refresh, probe)
}
