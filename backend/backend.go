// Package backend defines what every ovl backend implements, so that
// runs and builds never care which one the selector picked.
package backend

import (
	"context"
	"errors"

	"github.com/ovl-dev/ovl/layer"
)

// Names of the backends, as users type them (--backend, OVL_BACKEND).
const (
	Native = "native" // kernel overlayfs
	FUSE   = "fuse"   // ovl's own union filesystem on go-fuse
	Copy   = "copy"   // a plain copy: the last resort
)

// Names lists every backend, fastest first.
var Names = []string{Native, FUSE, Copy}

// ErrUnavailable reports a backend that cannot work for this caller here;
// the wrapping error says why.
var ErrUnavailable = errors.New("backend unavailable")

// Backend mounts layer stacks.
type Backend interface {
	// Name is one of Native, FUSE, Copy.
	Name() string
	// MaxLayers is the deepest lower stack Mount accepts; 0 means no limit.
	MaxLayers() int
	// Features lists the optional features Mount honours.
	Features() layer.Options
	// Mount validates spec and makes the merged tree appear at
	// spec.Target, in the caller's mount namespace. On error nothing is
	// left mounted or created.
	Mount(ctx context.Context, spec layer.Spec) (Mount, error)
}

// Server is a Backend that can also serve a stack from the calling
// process instead of a helper it starts (the FUSE backend's daemon):
// `ovl mount --foreground` and the drop-in mode's -f use it when the
// backend offers it, and Mount otherwise.
type Server interface {
	// Serve mounts spec and serves it until ctx is done, which unmounts
	// it, or until the mount goes away (umount, fusermount3 -u). ready,
	// when not nil, is called once the mount is live.
	Serve(ctx context.Context, spec layer.Spec, ready func()) error
}

// Mount is one live stack.
type Mount interface {
	// Target is where the merged tree is.
	Target() string
	// Unmount detaches the tree and stops anything serving it. Changes
	// are in the spec's Upper afterwards.
	Unmount() error
}
