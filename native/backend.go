// Package native mounts layer stacks with kernel overlayfs.
package native

import (
	"context"
	"fmt"

	"ovl/backend"
	"ovl/layer"
)

// Backend mounts stacks with kernel overlayfs.
type Backend struct{}

// New returns the kernel overlayfs backend.
func New() *Backend { return &Backend{} }

func (*Backend) Name() string            { return backend.Native }
func (*Backend) MaxLayers() int          { return layer.KernelMaxLayers }
func (*Backend) Features() layer.Options { return layer.Options{} }

// Mount is not implemented yet.
func (*Backend) Mount(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
	return nil, fmt.Errorf("native: %w: not implemented yet", backend.ErrUnavailable)
}
