package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Stack is what a contestant mounts: read-only layers (top first), an
// upper and work directory for changes, and the target directory.
type Stack struct {
	Lowers []string
	Upper  string
	Work   string
	Target string
}

// Mounted is one live stack of a contestant.
type Mounted interface {
	// Dir is where the merged tree is.
	Dir() string
	// Unmount takes the tree away and stops anything serving it.
	Unmount() error
}

// Contestant is one way of getting a writable view of a tree: an ovl
// backend or a peer tool.
type Contestant struct {
	// Name is what the report shows, e.g. "ovl native" or "fuse-overlayfs".
	Name string
	// Peer is true for tools that are not ovl.
	Peer bool
	// Backend is the ovl backend name passed to the ovl binary
	// (--backend) for the user-facing workloads; empty for peers.
	Backend string
	// SnapshotOnly marks a plain copy (cp -a): it only takes part in the
	// workloads where a copy is today's answer (mount, writable run,
	// Snapshot volume, !Container child build).
	SnapshotOnly bool
	// Unavailable says why the contestant cannot run here; nil when it can.
	Unavailable error
	// Note is a remark for the report, e.g. how a knob is set.
	Note string
	// Copy marks an ovl backend that copies the tree instead of
	// mounting it (ovl copy).
	Copy bool
	// FUSE marks contestants served by a FUSE daemon, whose requests
	// --requests counts.
	FUSE bool
	// Podman says how podman's overlay storage mounts with this
	// contestant in the podman workloads (podman.go); "" when it cannot.
	Podman string
	// Env is added to the ovl binary's environment in the user-facing
	// workloads (e.g. a backend knob).
	Env []string

	mount func(ctx context.Context, s Stack) (Mounted, error)
}

// Mount mounts s with the contestant.
func (c *Contestant) Mount(ctx context.Context, s Stack) (Mounted, error) {
	if c.Unavailable != nil {
		return nil, c.Unavailable
	}
	m, err := c.mount(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("%s: mount %s: %w", c.Name, s.Target, err)
	}
	return m, nil
}

// Slug is the contestant's name as a file name.
func (c *Contestant) Slug() string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(c.Name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// ErrMissing reports a peer tool that is not installed.
var ErrMissing = errors.New("not installed")

// Probe checks that c really mounts: a two-file stack in a scratch
// directory under dir, a read of the lower file and a write through the
// mount. It sets c.Unavailable to the failure, so a contestant that does
// not work yet is reported with its error rather than dropped.
func (c *Contestant) Probe(ctx context.Context, dir string) {
	if c.Unavailable != nil {
		return
	}
	if err := c.probe(ctx, dir); err != nil {
		c.Unavailable = err
	}
}

func (c *Contestant) probe(ctx context.Context, dir string) error {
	root, err := os.MkdirTemp(dir, "probe-"+c.Slug()+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	s := Stack{
		Lowers: []string{filepath.Join(root, "lower")},
		Upper:  filepath.Join(root, "upper"),
		Work:   filepath.Join(root, "work"),
		Target: filepath.Join(root, "merged"),
	}
	for _, d := range []string{s.Lowers[0], s.Upper, s.Work, s.Target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(s.Lowers[0], "probe"), []byte("lower\n"), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := c.Mount(ctx, s)
	if err != nil {
		return err
	}
	defer m.Unmount()
	got, err := os.ReadFile(filepath.Join(m.Dir(), "probe"))
	if err != nil {
		return fmt.Errorf("read through the mount: %w", err)
	}
	if string(got) != "lower\n" {
		return fmt.Errorf("read through the mount: got %q, want the lower file's %q", got, "lower\n")
	}
	if err := os.WriteFile(filepath.Join(m.Dir(), "new"), []byte("x"), 0o644); err != nil {
		return fmt.Errorf("write through the mount: %w", err)
	}
	return m.Unmount()
}
