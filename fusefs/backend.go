// Package fusefs is ovl's union filesystem on go-fuse.
package fusefs

import (
	"context"
	"fmt"

	"ovl/backend"
	"ovl/layer"
)

// Backend mounts stacks with ovl's FUSE union filesystem.
type Backend struct{}

// NewBackend returns the FUSE backend.
func NewBackend() *Backend { return &Backend{} }

func (*Backend) Name() string            { return backend.FUSE }
func (*Backend) MaxLayers() int          { return 0 }
func (*Backend) Features() layer.Options { return layer.Options{} }

// Mount is not implemented yet.
func (*Backend) Mount(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
	return nil, fmt.Errorf("fuse: %w: not implemented yet", backend.ErrUnavailable)
}
