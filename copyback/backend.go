// Package copyback is the last-resort backend: a plain copy of the layers.
package copyback

import (
	"context"
	"fmt"

	"ovl/backend"
	"ovl/layer"
)

// Backend "mounts" a stack by copying it.
type Backend struct{}

// New returns the copy backend.
func New() *Backend { return &Backend{} }

func (*Backend) Name() string            { return backend.Copy }
func (*Backend) MaxLayers() int          { return 0 }
func (*Backend) Features() layer.Options { return layer.Options{} }

// Mount is not implemented yet.
func (*Backend) Mount(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
	return nil, fmt.Errorf("copy: %w: not implemented yet", backend.ErrUnavailable)
}
