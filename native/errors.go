package native

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, to be tested with errors.Is.
var (
	// ErrOptionsTooLong reports a stack whose mount(2) options do not fit
	// in one page, the most the kernel reads, even with its layers named
	// by descriptor. Only the mount(2) fallback (kernels without
	// lowerdir+) has this limit.
	ErrOptionsTooLong = errors.New("overlay mount options longer than one page")
	// ErrOption reports an optional feature that cannot be used with this
	// spec here, e.g. metacopy with userxattr, or volatile without upper.
	ErrOption = errors.New("overlay option not available")
)

// MountError reports an overlay mount the kernel refused: what was
// mounted where, the step that failed, and the kernel's own explanation
// when it gave one.
type MountError struct {
	Stack  string   // what was mounted: "3 lowers (top /l/2), upper /u"
	Target string   // where
	Step   string   // the call that failed: "fsconfig lowerdir+ /l/2", "fsmount", "move_mount", "mount(2)"
	Err    error    // the errno
	Kernel []string // the kernel's messages from the fs context, without the "e " prefix
}

func (e *MountError) Error() string {
	msg := fmt.Sprintf("mount overlay (%s) on %s: %s: %v", e.Stack, e.Target, e.Step, e.Err)
	if len(e.Kernel) > 0 {
		msg += " (kernel: " + strings.Join(e.Kernel, "; ") + ")"
	}
	return msg
}

func (e *MountError) Unwrap() error { return e.Err }
