package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/internal/paths"
	"github.com/ovl-dev/ovl/layer"
)

// DefaultTransientDir is where runs keep their transient directories
// unless Config.TransientDir says otherwise: StateDir()/transient.
func DefaultTransientDir() (string, error) {
	state, err := paths.StateDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(state, "transient"), nil
}

// TransientPID returns the pid in a transient directory's name NAME.PID,
// or false for a name of another form.
func TransientPID(name string) (int, bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return 0, false
	}
	pid, err := strconv.Atoi(name[i+1:])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// pidAlive reports whether process pid exists and is not a zombie (a
// killed run's init may wait a while for its reaper).
func pidAlive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// CleanTransient removes the transient directories under dir whose run
// is over (its pid is dead): what runs killed before they could clean up
// left behind. With dryRun it only lists them. It returns the
// directories removed (or that would be), and leaves the others alone.
func CleanTransient(dir string, dryRun bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list transient directories: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		pid, ok := TransientPID(e.Name())
		if !ok || !e.IsDir() || pidAlive(pid) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if !dryRun {
			if err := removeTransient(p); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// removeTransient removes a run's transient directory, refusing while
// anything is still mounted in it (which would remove the mounted files).
func removeTransient(p string) error {
	if mounted, err := hasMountsUnder(p); err != nil {
		return err
	} else if mounted {
		return fmt.Errorf("remove %s: something is still mounted there", p)
	}
	err := layer.RemoveAll(p)
	if errors.Is(err, os.ErrPermission) && os.Geteuid() != 0 {
		// Files a run created as one of the user's subordinate uids:
		// remove them as root of a user namespace with those mapped.
		if err2 := removeAsMappedRoot(p); !errors.Is(err2, idmap.ErrNoSubordinate) {
			return err2
		}
	}
	return err
}

// hasMountsUnder reports whether this mount namespace has a mount at or
// below p.
func hasMountsUnder(p string) (bool, error) {
	entries, err := mountinfo.Read()
	if err != nil {
		return false, err
	}
	return len(mountinfo.Under(entries, p)) > 0, nil
}
