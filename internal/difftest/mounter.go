package difftest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/layer"
)

// Mounter mounts one layer stack for the harness. Name appears in reports.
type Mounter struct {
	Name  string
	Mount func(ctx context.Context, spec layer.Spec) (backend.Mount, error)
}

// FromBackend returns a Mounter that mounts through b.
func FromBackend(b backend.Backend) Mounter {
	return Mounter{Name: b.Name(), Mount: b.Mount}
}

// Kernel returns a Mounter that mounts kernel overlayfs with mount(2),
// adding "userxattr" for a stack whose Namespace is layer.User, and extra
// options (e.g. "redirect_dir=on") after the layer options. It stands on
// its own so the harness can be proven without any other backend.
func Kernel(extra ...string) Mounter {
	name := "kernel"
	if len(extra) > 0 {
		name += "(" + strings.Join(extra, ",") + ")"
	}
	return Mounter{Name: name, Mount: func(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
		return kernelMount(spec, extra)
	}}
}

func kernelMount(spec layer.Spec, extra []string) (backend.Mount, error) {
	if err := spec.Validate(layer.KernelMaxLayers); err != nil {
		return nil, err
	}
	paths := append([]string{spec.Upper, spec.Work}, spec.Lowers...)
	for _, p := range paths {
		if strings.ContainsAny(p, ",:\\") {
			return nil, fmt.Errorf("kernel overlay at %s: path %q contains ',', ':' or '\\', which mount(2) options cannot carry; use another directory", spec.Target, p)
		}
	}
	opts := []string{"lowerdir=" + strings.Join(spec.Lowers, ":")}
	if spec.Upper != "" {
		opts = append(opts, "upperdir="+spec.Upper, "workdir="+spec.Work)
	}
	if spec.Namespace == layer.User {
		opts = append(opts, "userxattr")
	}
	opts = append(opts, extra...)
	var flags uintptr
	if spec.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	data := strings.Join(opts, ",")
	if err := unix.Mount("overlay", spec.Target, "overlay", flags, data); err != nil {
		return nil, fmt.Errorf("mount kernel overlay on %s (%s): %w", spec.Target, data, err)
	}
	return kernelMounted(spec.Target), nil
}

// kernelMounted is a kernel overlay mounted by Kernel.
type kernelMounted string

func (m kernelMounted) Target() string { return string(m) }

// Unmount unmounts the overlay; if something still holds it open, it
// detaches it lazily, so no mount outlives the test, and still reports
// the busy mount.
func (m kernelMounted) Unmount() error {
	err := unix.Unmount(string(m), 0)
	if errors.Is(err, unix.EBUSY) {
		if derr := unix.Unmount(string(m), unix.MNT_DETACH); derr == nil {
			return fmt.Errorf("unmount %s: %w (detached it lazily; a descriptor was left open)", string(m), err)
		}
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", string(m), err)
	}
	return nil
}
