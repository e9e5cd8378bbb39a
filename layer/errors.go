package layer

import (
	"errors"
	"fmt"
)

// Sentinel errors, to be tested with errors.Is.
var (
	// ErrNotDir reports a layer, work or target path that is missing or
	// not a directory.
	ErrNotDir = errors.New("not an existing directory")
	// ErrOverlap reports two paths of a stack where one is inside the other.
	ErrOverlap = errors.New("paths overlap")
	// ErrCrossDevice reports a work directory on another filesystem than
	// its upper directory.
	ErrCrossDevice = errors.New("work and upper are on different filesystems")
	// ErrNestedOverlay reports an upper directory that is itself on an
	// overlay mount, which the kernel refuses.
	ErrNestedOverlay = errors.New("upper is on an overlay mount")
	// ErrTooManyLayers reports a stack deeper than the backend can mount.
	ErrTooManyLayers = errors.New("too many lower layers")
	// ErrIncomplete reports a stack that lacks a required part (no lower,
	// upper without work, no target).
	ErrIncomplete = errors.New("incomplete layer spec")
)

// SpecError describes why a Spec was refused: which field, which path,
// and what to do about it.
type SpecError struct {
	Field string // "lower[2]", "upper", "work", "target"
	Path  string
	Err   error  // one of the sentinels above, or an *fs.PathError
	Hint  string // what the user can do
}

func (e *SpecError) Error() string {
	msg := fmt.Sprintf("%s %s: %v", e.Field, e.Path, e.Err)
	if e.Path == "" {
		msg = fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

func (e *SpecError) Unwrap() error { return e.Err }
