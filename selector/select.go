package selector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/paths"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// Options say what Select needs and where to probe.
type Options struct {
	// LayerDir is a directory on the filesystem that will hold the
	// layers; the probes mount there. Default: chosen (place.go), from
	// paths.StateDir() on.
	LayerDir string
	// Project is the vagga project the command works in, if any: with
	// no LayerDir its .vagga is a candidate, and with LayerDir its
	// .vagga (a build's) hints name the project rather than --layer-dir.
	Project string
	// CacheDir holds the cached reports. Default: paths.RuntimeDir().
	CacheDir string
	// Refresh probes again even when a cached report exists.
	Refresh bool
	// NoCache neither reads nor writes the cache.
	NoCache bool
	// Backend forces a backend by name; "" takes $OVL_BACKEND
	// (EnvBackend), and "" or "auto" there lets the selector choose;
	// "auto" here ignores EnvBackend.
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
	return place(ctx, o, request(o))
}

// Select probes (cached) and chooses: the one decision of a mount, a run
// or a build, which the caller carries to wherever the stack is mounted
// (Decision.Open makes the backend). It is the only place ovl chooses a
// backend. A forced backend that cannot work gives an error wrapping
// backend.ErrUnavailable, saying why.
func Select(ctx context.Context, o Options) (Decision, error) {
	req := request(o)
	if req.Force == backend.Copy { // works everywhere: nothing to probe
		return Force(backend.Copy, req.ForcedBy)
	}
	_, d, err := place(ctx, o, req)
	return d, err
}

// Force returns the decision for a backend the caller names, by (for
// messages, e.g. "the drop-in mode"), for this process, without probing
// whether it works here: for callers that need no probe (the copy
// backend works everywhere; ovl's drop-in mode is FUSE by definition)
// and for tests. An unknown name is an error. Its isolation follows the
// caller's capabilities: namespaces of its own with CAP_SYS_ADMIN, a
// user namespace without (a run on the copy backend falls back to
// chroot where none can be made).
func Force(name, by string) (Decision, error) {
	if by == "" {
		by = "the caller"
	}
	d := Decision{Backend: name, ForcedBy: by, Reasons: []string{name + " forced by " + by}, Isolation: IsolateUserns}
	if userns.CanMount() {
		d.Isolation = IsolateNamespaces
	}
	d = decided(d, userns.Privileged())
	if _, err := d.Open(); err != nil {
		return Decision{}, fmt.Errorf("%s: %w", by, err)
	}
	return d, nil
}

// EnvForced judges the backend EnvBackend forces, against r, as Select
// would: ok is false when it forces none; err says why a forced backend
// cannot work. For `ovl check`, which chooses as if nothing were forced
// and then says what the environment changes.
func EnvForced(r *Report) (d Decision, ok bool, err error) {
	name := forcedFromEnv()
	if name == "" {
		return Decision{}, false, nil
	}
	d, err = Choose(r, Request{Force: name, ForcedBy: EnvBackend})
	return d, true, err
}

func request(o Options) Request {
	req := Request{Force: o.Backend, ForcedBy: "--backend", Spec: o.Spec, HostMount: o.HostMount}
	if o.Project != "" && o.LayerDir == filepath.Join(o.Project, ".vagga") {
		req.Project = o.Project
	}
	if req.Force == "" {
		req.Force, req.ForcedBy = forcedFromEnv(), EnvBackend
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
