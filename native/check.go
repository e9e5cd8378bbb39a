package native

import (
	"fmt"

	"github.com/ovl-dev/ovl/layer"
)

// Check reports whether kernel overlayfs can mount spec, without touching
// anything: spec.Validate with the kernel's layer limit, plus the kernel's
// own rules on top of it. The kernel refuses an upper on an overlay mount
// (spec.CheckUpperNotOnOverlay); Linux 5.x and later refuse a lower layer
// that is the same as, or nested in, another lower ("conflicting"/
// "overlapping lowerdir path", ELOOP), and a stack of one lower layer
// without an upper ("at least 2 lowerdir are needed while upperdir
// nonexistent").
// Errors are *layer.SpecError.
func Check(spec layer.Spec) error {
	if err := spec.Validate(layer.KernelMaxLayers); err != nil {
		return err
	}
	if err := spec.CheckUpperNotOnOverlay(); err != nil {
		return err
	}
	if spec.IDMapped() {
		return &layer.SpecError{Field: "uidmapping/gidmapping", Err: fmt.Errorf("%w: kernel overlay takes no owner mapping of its own", ErrOption),
			Hint: "mount with the fuse backend, which translates owners"}
	}
	if spec.Upper == "" && len(spec.Lowers) == 1 {
		return &layer.SpecError{Field: "lower", Path: spec.Lowers[0],
			Err:  fmt.Errorf("%w: kernel overlayfs needs at least 2 lower layers when there is no upper", layer.ErrIncomplete),
			Hint: "add an upper and work directory and mount read-only, or bind-mount the one layer read-only"}
	}
	canon := make([]string, len(spec.Lowers))
	for i, l := range spec.Lowers {
		c, err := layer.Canonical(l)
		if err != nil {
			return &layer.SpecError{Field: fmt.Sprintf("lower[%d]", i), Path: l, Err: err}
		}
		canon[i] = c
	}
	for j := range canon {
		for i := 0; i < j; i++ {
			a, b := canon[i], canon[j]
			var rel string
			switch {
			case a == b:
				rel = "is the same directory as"
			case layer.Inside(b, a):
				rel = "is inside"
			case layer.Inside(a, b):
				rel = "contains"
			default:
				continue
			}
			return &layer.SpecError{Field: fmt.Sprintf("lower[%d]", j), Path: spec.Lowers[j],
				Err:  fmt.Errorf("%w: lower[%d] %s lower[%d] %s, which kernel overlayfs refuses", layer.ErrOverlap, j, rel, i, spec.Lowers[i]),
				Hint: "give each layer its own directory, none inside another"}
		}
	}
	return nil
}
