package builder

import (
	"fmt"
	"time"

	"github.com/ovl-dev/ovl/vagga"
)

// Status is what happened to a step, or to a phase of the build.
type Status string

const (
	StatusCached  Status = "cached"  // the step's layer existed: not run
	StatusRunning Status = "running" // the step starts
	StatusDone    Status = "done"    // the step ran and its layer is stored
	StatusFailed  Status = "failed"  // the step ran and failed
	StatusSquash  Status = "squash"  // old layers were squashed into one
	StatusRoot    Status = "root"    // the plain root directory was written
	StatusPulled  Status = "pulled"  // the step's layer came from the step cache: not run
	StatusWarning Status = "warning" // something failed that the build goes on without (Detail)
)

// Event reports progress of a build, one per step and phase, for the
// progress lines and for --json.
type Event struct {
	Container string    `json:"container"`
	Index     int       `json:"index,omitempty"` // 1-based step number
	Total     int       `json:"total,omitempty"`
	Step      string    `json:"step,omitempty"` // the step's Summary
	Pos       vagga.Pos `json:"pos,omitzero"`
	Status    Status    `json:"status"`
	Seconds   float64   `json:"seconds"`
	Key       string    `json:"key,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// String is the progress line: `[3/7] !Sh "make" … cached | 2.1 s`.
func (e Event) String() string {
	switch e.Status {
	case StatusWarning:
		return fmt.Sprintf("warning: [%d/%d] %s: %s", e.Index, e.Total, e.Step, e.Detail)
	case StatusSquash, StatusRoot:
		return fmt.Sprintf("[%s] %s … %s | %s", e.Container, e.Status, e.Detail, seconds(e.Seconds))
	}
	return fmt.Sprintf("[%d/%d] %s … %s | %s", e.Index, e.Total, e.Step, e.Status, seconds(e.Seconds))
}

func seconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%d ms", time.Duration(s*float64(time.Second)).Milliseconds())
	}
	return fmt.Sprintf("%.1f s", s)
}
