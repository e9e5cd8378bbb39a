package native

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// Backend mounts stacks with kernel overlayfs. The zero value is ready
// to use.
type Backend struct {
	m *mounter // nil: kernelMounter
}

var _ backend.Backend = (*Backend)(nil)

// New returns the kernel overlayfs backend.
func New() *Backend { return &Backend{} }

// Name is backend.Native.
func (*Backend) Name() string { return backend.Native }

// MaxLayers is the kernel's limit, layer.KernelMaxLayers.
func (*Backend) MaxLayers() int { return layer.KernelMaxLayers }

// Features lists what Mount honours for this caller: everything as root
// in the initial namespace; inside a user namespace (where an ordinary
// user's mounts happen) the kernel's userxattr mode has no redirect_dir
// and no metacopy. AllowOther holds trivially: a kernel mount serves
// every user the permissions allow.
func (*Backend) Features() layer.Options {
	f := layer.Options{Volatile: true, Index: true, Xino: true, AllowOther: true}
	if !unprivileged() {
		f.RedirectDir, f.Metacopy = true, true
	}
	return f
}

func unprivileged() bool { return !userns.Privileged() }

// Mount validates spec and mounts it on spec.Target with kernel overlayfs,
// in the caller's mount namespace. The stack uses userxattr (metadata in
// user.overlay.*) when spec.Namespace is layer.User or the caller runs in
// a user namespace. Errors are *layer.SpecError for a bad spec (nothing
// is created or mounted), wrap ErrOption for a feature that cannot be had
// here, and are *MountError when the kernel refuses; an ordinary user
// outside a user namespace also gets backend.ErrUnavailable.
func (b *Backend) Mount(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mount overlay on %s: %w", spec.Target, err)
	}
	if err := Check(spec); err != nil {
		return nil, err
	}
	userxattr := spec.Namespace == layer.User || userns.InUserNamespace()
	opts, err := featureOptions(spec, userxattr)
	if err != nil {
		return nil, fmt.Errorf("mount overlay on %s: %w", spec.Target, err)
	}
	m := kernelMounter
	if b.m != nil {
		m = *b.m
	}
	if err := m.stack(spec, opts); err != nil {
		if errors.Is(err, unix.EPERM) && unprivileged() && !userns.InUserNamespace() {
			return nil, fmt.Errorf("%w: %w (an ordinary user can mount kernel overlay only inside a user namespace of its own: start the mount through userns.Command, as ovl's selector does)", backend.ErrUnavailable, err)
		}
		return nil, err
	}
	return &mount{target: spec.Target}, nil
}

// mount is one live kernel overlay.
type mount struct{ target string }

func (m *mount) Target() string { return m.target }
func (m *mount) Unmount() error { return backend.Unmount(m.target, false) }
