package selector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/mountinfo"
)

// sandbox is one probe's scratch directory under the layer directory, so
// that the probe tests the filesystem that will really hold the layers.
// remove undoes everything the probe made, mounted or not.
type sandbox struct {
	root   string
	mounts []string // targets to detach before removing, last first
}

func newSandbox(parent, probe string) (*sandbox, error) {
	root, err := os.MkdirTemp(parent, "probe-"+probe+"-")
	if err != nil {
		return nil, fmt.Errorf("probe %s: scratch dir under %s: %w", probe, parent, err)
	}
	return &sandbox{root: root}, nil
}

// dir makes and returns the directory name inside the sandbox.
func (s *sandbox) dir(name string) (string, error) {
	p := filepath.Join(s.root, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", err
	}
	return p, nil
}

// files makes the named files (parents created) under dir, each holding
// its own name.
func (s *sandbox) files(dir string, names ...string) error {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(n), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mounted records that target may be a mount point, so remove detaches it
// if the probe could not unmount it itself.
func (s *sandbox) mounted(target string) { s.mounts = append(s.mounts, target) }

// remove detaches whatever the probe left mounted and deletes the sandbox.
// It never deletes through a mount: if a target stays mounted, the
// sandbox is left in place and logged.
func (s *sandbox) remove() {
	for i := len(s.mounts) - 1; i >= 0; i-- {
		t := s.mounts[i]
		for {
			err := unix.Unmount(t, unix.MNT_DETACH)
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				break // not (or no longer) a mount point
			}
			if errors.Is(err, unix.EPERM) && !isMountPoint(t) {
				// Without CAP_SYS_ADMIN umount(2) refuses before it
				// looks: nothing was mounted there.
				break
			}
			if err != nil {
				slog.Warn("probe: cannot unmount, leaving its scratch dir", "target", t, "err", err)
				return
			}
		}
	}
	if err := os.RemoveAll(s.root); err != nil {
		slog.Warn("probe: cannot remove scratch dir", "dir", s.root, "err", err)
	}
}

// isMountPoint reports whether something is mounted on target, from the
// mount table; when that cannot be read it answers yes, which keeps the
// sandbox rather than deleting through a mount.
func isMountPoint(target string) bool {
	entries, err := mountinfo.Read()
	if err != nil {
		return true
	}
	canon, err := filepath.EvalSymlinks(target)
	if err != nil {
		canon = target
	}
	_, ok := mountinfo.Find(entries, canon)
	return ok
}

// staleAge is how old a probe's scratch dir must be before a later probe
// takes it for the leftover of a killed one.
const staleAge = time.Hour

// removeStale removes the scratch dirs of probes that were killed before
// they could clean up (older than staleAge), detaching their targets
// first.
func removeStale(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, "probe-*"))
	for _, d := range old {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		slog.Debug("probe: removing a killed probe's scratch dir", "dir", d)
		(&sandbox{root: d, mounts: []string{filepath.Join(d, "m")}}).remove()
	}
}
