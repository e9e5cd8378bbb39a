// Package paths says where ovl keeps its own files: the probe cache, the
// FUSE daemons' sockets and logs, transient run directories.
package paths

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RuntimeDir is for files that should vanish at reboot (the probe cache,
// daemon state): $OVL_RUNTIME_DIR, else /run/ovl for root, else
// $XDG_RUNTIME_DIR/ovl, else /tmp/ovl-UID. It is created (0700) if missing.
func RuntimeDir() (string, error) {
	return ensure(pick("OVL_RUNTIME_DIR", "/run/ovl", "XDG_RUNTIME_DIR", ""))
}

// StateDir is for files that outlive a reboot (transient run copies of
// the copy backend, which `ovl clean --transient` removes): $OVL_STATE_DIR,
// else /var/lib/ovl for root, else $XDG_STATE_HOME/ovl, else
// ~/.local/state/ovl, else /var/tmp/ovl-UID. Created (0700) if missing.
func StateDir() (string, error) {
	home, _ := os.UserHomeDir()
	fallback := ""
	if home != "" && home != "/nonexistent" {
		// setpriv and su without -l keep root's HOME: use it only if it
		// is ours to write.
		if unix.Access(home, unix.W_OK) == nil {
			fallback = filepath.Join(home, ".local", "state")
		}
	}
	d := pick("OVL_STATE_DIR", "/var/lib/ovl", "XDG_STATE_HOME", fallback)
	if d == "" {
		d = fmt.Sprintf("/var/tmp/ovl-%d", os.Geteuid())
	}
	return ensure(d)
}

func pick(override, rootDir, xdg, fallback string) string {
	if v := os.Getenv(override); v != "" {
		return v
	}
	if os.Geteuid() == 0 {
		return rootDir
	}
	if v := os.Getenv(xdg); v != "" {
		return filepath.Join(v, "ovl")
	}
	if fallback != "" {
		return filepath.Join(fallback, "ovl")
	}
	return fmt.Sprintf("/tmp/ovl-%d", os.Geteuid())
}

func ensure(d string) (string, error) {
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("ovl's directory %s: %w (set OVL_RUNTIME_DIR or OVL_STATE_DIR to a writable place)", d, err)
	}
	return d, nil
}

// OwnDir returns ovl's directory for this user under parent (a shared
// sticky directory such as /dev/shm or /tmp): parent/ovl for root,
// parent/ovl-UID for others, made 0700 if missing. One that exists must
// be a directory of this user's, not a symlink, and reachable by no one
// else, or it is refused: another user could have made it first.
func OwnDir(parent string) (string, error) {
	name := "ovl"
	if os.Geteuid() != 0 {
		name = fmt.Sprintf("ovl-%d", os.Geteuid())
	}
	d := filepath.Join(parent, name)
	if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
		return "", fmt.Errorf("ovl's directory %s: %w", d, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(d, &st); err != nil {
		return "", fmt.Errorf("ovl's directory %s: %w", d, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		return "", fmt.Errorf("ovl's directory %s: not a private directory of uid %d (mode %o, owner %d): remove it", d, os.Geteuid(), st.Mode, st.Uid)
	}
	return d, nil
}

// StateDirGiven reports whether the state directory was named by the
// user ($OVL_STATE_DIR) rather than defaulted.
func StateDirGiven() bool { return os.Getenv("OVL_STATE_DIR") != "" }
