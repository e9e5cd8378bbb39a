package builder

import (
	"errors"
	"fmt"

	"github.com/ovl-dev/ovl/vagga"
)

// Sentinel errors, to be tested with errors.Is.
var (
	// ErrStepFailed reports a build step that ran and failed: a command
	// that exited non-zero, or a file step that could not be applied.
	ErrStepFailed = errors.New("build step failed")
	// ErrNoContainer reports a container name the config does not define.
	ErrNoContainer = errors.New("no such container")
	// ErrNoCommand reports a command name the config does not define.
	ErrNoCommand = errors.New("no such command")
)

// StepError says which step of which container failed, where it is
// written, and how to look at the state just before it.
type StepError struct {
	Container string
	Index     int // 1-based; 0 when the step's key could not be computed
	Total     int
	Step      string // the step's Summary
	Pos       vagga.Pos
	Err       error
	// Hint says what to do: fix the input, or how to open a shell in the
	// state before the step.
	Hint string
}

func (e *StepError) Error() string {
	where := e.Pos.String()
	s := fmt.Sprintf("%s: %s", where, e.Step)
	if e.Container != "" && e.Index > 0 {
		s = fmt.Sprintf("%s: container %q, step %d/%d %s", where, e.Container, e.Index, e.Total, e.Step)
	}
	s += ": " + e.Err.Error()
	if e.Hint != "" {
		s += "\n" + e.Hint
	}
	return s
}

func (e *StepError) Unwrap() error { return e.Err }

// ExitError reports a command step that exited with a non-zero status or
// was killed.
type ExitError struct {
	Code   int
	Signal string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "killed by " + e.Signal
	}
	return fmt.Sprintf("exited with status %d", e.Code)
}

// Is makes a failed command an ErrStepFailed.
func (e *ExitError) Is(target error) bool { return target == ErrStepFailed }
