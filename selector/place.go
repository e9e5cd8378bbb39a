package selector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/paths"
)

// This file places the layer directory: the directory whose filesystem
// the probes test, where a run's scratch state and a mount's layers go.
// A directory given (--layer-dir, $OVL_STATE_DIR, a build's .vagga) is
// probed alone. Otherwise ovl's state directory is tried first; where
// kernel overlay refuses an upper on its filesystem (a container's
// overlay root, FUSE, NFS), the project's .vagga and then ovl's own
// directory on a tmpfs (/dev/shm, /tmp, $XDG_RUNTIME_DIR) are tried in
// turn, before settling for a slower backend. A run's uppers live on a
// tmpfs of its own, so a tmpfs is a faithful place to probe for runs.

// Where place looks: variables, for tests.
var (
	stateDir      = paths.StateDir
	stateDirGiven = paths.StateDirGiven
	tmpfsParents  = func() []string { return []string{"/dev/shm", "/tmp", os.Getenv("XDG_RUNTIME_DIR")} }
)

// candidate is a layer directory place may choose, and why it is one.
type candidate struct {
	dir string
	why string
}

// candidates are the layer directories to try, in order: the one given,
// or the state directory, then the project's .vagga and ovl's
// directories on the tmpfs mounts there are.
func candidates(o Options) ([]candidate, error) {
	if o.LayerDir != "" {
		return []candidate{{o.LayerDir, "given"}}, nil
	}
	state, err := stateDir()
	if err != nil {
		return nil, err
	}
	if stateDirGiven() {
		return []candidate{{state, "OVL_STATE_DIR"}}, nil
	}
	out := []candidate{{state, "ovl's state directory"}}
	if o.HostMount {
		// `ovl mount`'s layers are where the caller says: no other
		// directory stands for them (--layer-dir names theirs).
		return out, nil
	}
	if o.Project != "" {
		d := filepath.Join(o.Project, ".vagga")
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, candidate{d, "the project's filesystem"})
		}
	}
	for _, parent := range tmpfsParents() {
		if parent == "" {
			continue
		}
		if fs, _, err := layerFS(parent); err != nil || fs != "tmpfs" {
			continue
		}
		out = append(out, candidate{dir: parent, why: "a tmpfs"})
	}
	return out, nil
}

// place probes the candidates in turn and returns the report and the
// decision of the one that gives the fastest backend: the first for
// which kernel overlay works, or, failing that, the best of those tried.
// It moves on from a candidate only when the candidate's filesystem is
// one kernel overlay refuses as an upper: on any other, a different
// directory cannot do better.
func place(ctx context.Context, o Options, req Request) (*Report, Decision, error) {
	cands, err := candidates(o)
	if err != nil {
		return nil, Decision{}, err
	}
	var (
		best    *Report
		bestD   Decision
		bestErr error
		bestAt  int
		first   *Report
		skipped []error
		made    []string // ovl's directories made on a tmpfs
	)
	defer func() {
		for _, d := range made {
			if best == nil || d != best.LayerDir {
				os.Remove(d) // not chosen: leave no empty directory behind
			}
		}
	}()
	for i, c := range cands {
		dir := c.dir
		if c.why == "a tmpfs" {
			if dir, err = paths.OwnDir(c.dir); err != nil {
				skipped = append(skipped, err)
				continue
			}
			made = append(made, dir)
		}
		oc := o
		oc.LayerDir = dir
		r, err := report(ctx, oc)
		if err != nil {
			if i == 0 {
				return nil, Decision{}, err
			}
			skipped = append(skipped, err)
			continue
		}
		d, derr := Choose(r, req)
		if first == nil {
			first = r
		}
		if best == nil || rank(d, derr) > rank(bestD, bestErr) {
			best, bestD, bestErr, bestAt = r, d, derr, i
		}
		if (derr == nil && d.Backend == backend.Native) || upperCapable(r.LayerFS) {
			break
		}
	}
	if best == nil {
		return nil, Decision{}, errors.Join(skipped...)
	}
	for _, err := range skipped {
		slog.Debug("layer dir candidate skipped", "err", err)
	}
	if bestAt > 0 {
		bestD.LayerDirWhy = fmt.Sprintf("%s: %s is on %s, which kernel overlay refuses as an upper", cands[bestAt].why, first.LayerDir, first.LayerFS)
	} else {
		bestD.LayerDirWhy = cands[0].why
	}
	return best, bestD, bestErr
}

// rank orders decisions by speed: a forced backend that cannot work,
// copy, FUSE, native.
func rank(d Decision, err error) int {
	if err != nil {
		return 0
	}
	switch d.Backend {
	case backend.Native:
		return 3
	case backend.FUSE:
		return 2
	}
	return 1
}
