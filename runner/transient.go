package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ovl/internal/paths"
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
	err := removeAll(p)
	if errors.Is(err, os.ErrPermission) && os.Geteuid() != 0 {
		// Files a run created as one of the user's subordinate uids:
		// remove them as root of a user namespace with those mapped.
		if err2 := removeAsMappedRoot(p); err2 != errNoIDMap {
			return err2
		}
	}
	return err
}

// hasMountsUnder reports whether this mount namespace has a mount at or
// below p.
func hasMountsUnder(p string) (bool, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if mp := unescapeOctal(f[4]); mp == p || strings.HasPrefix(mp, p+"/") {
			return true, nil
		}
	}
	return false, nil
}

// unescapeOctal undoes mountinfo's octal escapes ("\\040" for a space).
func unescapeOctal(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeAll is os.RemoveAll that also removes read-only directories (a
// copied container has many) by making them writable first.
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return err
	}
	filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
