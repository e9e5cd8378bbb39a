// Package copyback is the last-resort backend: where neither kernel
// overlayfs nor FUSE works, a stack is "mounted" by copying its layers
// into the target directory, as vagga did before overlays.
//
// A mount costs a full copy of the layers (seconds for a big container)
// and the target is a plain directory: it cannot be made read-only by
// this package, and changes are seen nowhere else until Unmount. Unmount
// of a writable stack writes the changes into the spec's Upper in the
// layer format (layer.Diff), so the build engine gets layers on every
// backend; Discard drops them instead, for throw-away runs.
package copyback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/layer"
)

// Backend "mounts" a stack by copying it.
type Backend struct{}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Mount   = (*Mount)(nil)
)

// New returns the copy backend.
func New() *Backend { return &Backend{} }

// Name is backend.Copy.
func (*Backend) Name() string { return backend.Copy }

// MaxLayers is 0: a copy has no depth limit.
func (*Backend) MaxLayers() int { return 0 }

// Features is empty: no overlay option means anything to a copy.
func (*Backend) Features() layer.Options { return layer.Options{} }

// ErrTargetNotEmpty reports a target directory that already holds files;
// a copy cannot hide them the way a mount would.
var ErrTargetNotEmpty = errors.New("target directory is not empty")

// Mount copies the stack (Upper on top of Lowers) into spec.Target, which
// must be an empty directory. On error the target is emptied again.
func (b *Backend) Mount(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
	if err := spec.Validate(b.MaxLayers()); err != nil {
		return nil, fmt.Errorf("copy: %w", err)
	}
	if spec.Options != (layer.Options{}) {
		return nil, fmt.Errorf("copy: options %+v: %w", spec.Options, backend.ErrUnavailable)
	}
	if spec.IDMapped() {
		return nil, fmt.Errorf("copy: uidmapping/gidmapping: %w: only the fuse backend translates owners", backend.ErrUnavailable)
	}
	if entries, err := os.ReadDir(spec.Target); err != nil {
		return nil, fmt.Errorf("copy: target %s: %w", spec.Target, err)
	} else if len(entries) > 0 {
		return nil, &layer.SpecError{Field: "target", Path: spec.Target, Err: ErrTargetNotEmpty,
			Hint: "the copy backend needs an empty target directory"}
	}
	layers := spec.Lowers
	if spec.Upper != "" {
		layers = append([]string{spec.Upper}, spec.Lowers...)
	}
	if err := layer.Flatten(ctx, layers, spec.Target); err != nil {
		if cerr := layer.EmptyDir(spec.Target); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up %s: %w", spec.Target, cerr))
		}
		return nil, fmt.Errorf("copy: %w", err)
	}
	return &Mount{spec: spec}, nil
}

// Mount is one copied stack.
type Mount struct {
	spec layer.Spec
	once sync.Once
	err  error
}

// Target is the directory holding the copy.
func (m *Mount) Target() string { return m.spec.Target }

// Unmount writes the changes made in the target into the spec's Upper
// (when the stack is writable), replacing what Upper held, and then
// empties the target.
func (m *Mount) Unmount() error {
	m.once.Do(func() {
		if m.spec.Writable() {
			if err := m.saveChanges(); err != nil {
				m.err = fmt.Errorf("copy: keep changes of %s in %s: %w", m.spec.Target, m.spec.Upper, err)
				return
			}
		}
		m.err = m.empty()
	})
	return m.err
}

// Discard empties the target without keeping any change: the end of a
// throw-away run, without the cost of computing a diff.
func (m *Mount) Discard() error {
	m.once.Do(func() { m.err = m.empty() })
	return m.err
}

// empty removes everything in the target, keeping the directory.
func (m *Mount) empty() error {
	// Something still mounted inside the copy (a host directory bound
	// into a container) would be emptied with it: refuse.
	if inside, err := mountsInside(m.spec.Target); err != nil {
		return fmt.Errorf("copy: empty %s: %w", m.spec.Target, err)
	} else if len(inside) > 0 {
		return fmt.Errorf("copy: refusing to empty %s: %s is still mounted inside it (unmount it first)", m.spec.Target, inside[0])
	}
	if err := layer.EmptyDir(m.spec.Target); err != nil {
		return fmt.Errorf("copy: empty %s: %w", m.spec.Target, err)
	}
	return nil
}

// saveChanges diffs the target against the lowers into a fresh directory
// under Work (same filesystem as Upper), then moves the result into
// Upper, so that a failing diff leaves Upper as it was.
func (m *Mount) saveChanges() error {
	staged, err := os.MkdirTemp(m.spec.Work, "diff-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(staged)
	if err := layer.Diff(m.spec.Namespace, m.spec.Lowers, m.spec.Target, staged); err != nil {
		return err
	}
	if err := layer.EmptyDir(m.spec.Upper); err != nil {
		return err
	}
	entries, err := os.ReadDir(staged)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(staged, e.Name()), filepath.Join(m.spec.Upper, e.Name())); err != nil {
			return err
		}
	}
	return layer.CopyMetadata(staged, m.spec.Upper)
}

// mountsInside lists the mount points strictly below dir in the caller's
// mount namespace.
func mountsInside(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	entries, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	var inside []string
	for _, mp := range mountinfo.Under(entries, dir) {
		if layer.Inside(mp, dir) {
			inside = append(inside, mp)
		}
	}
	return inside, nil
}
