package vagga

import (
	"errors"
	"fmt"
)

// Sentinel errors, to be tested with errors.Is on what Load and Parse return.
var (
	// ErrUnsupported reports a step, volume or command kind ovl cannot run.
	ErrUnsupported = errors.New("not supported")
	// ErrCycle reports containers that depend on each other in a loop.
	ErrCycle = errors.New("has cyclic dependency")
	// ErrUnknownContainer reports a reference to a container the file
	// does not define.
	ErrUnknownContainer = errors.New("no such container")
	// ErrInvalid reports a value of the wrong shape (a list where a
	// mapping belongs, a size that doesn't parse, a missing field).
	ErrInvalid = errors.New("invalid")
	// ErrSyntax reports a file that is not valid YAML.
	ErrSyntax = errors.New("invalid YAML")
)

// Pos is where something was written: file and 1-based line and column.
type Pos struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

// String returns "file:line", the form editors jump to.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Error is a problem at one place of the file. It prints
// "file:line: message (hint)".
type Error struct {
	Pos  Pos
	Msg  string
	Err  error  // a sentinel of this package, or a cause such as *fs.PathError
	Hint string // what to do about it
}

func (e *Error) Error() string {
	s := e.Pos.String() + ": " + e.Msg
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// isUnsupported reports whether err is this package's *Error for
// something ovl does not do (rather than a mistake in the file).
func isUnsupported(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Err == ErrUnsupported
}
