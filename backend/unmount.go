package backend

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotMounted reports an unmount of a path that is not a mount point.
var ErrNotMounted = errors.New("not a mount point")

// busyRetry is how long Unmount tries a busy mount again.
const busyRetry = time.Second

// Unmount detaches the stack mounted on target, whatever backend mounted
// it: ovl's one unmount path (`ovl umount`, the native and FUSE mounts'
// Unmount, a FUSE daemon told to stop). It calls umount(2) where this
// process may (root, or root in the mount's user namespace); where it
// may not, as for an ordinary user's FUSE mount, it runs fusermount3 -u
// (fusermount where only FUSE 2's is installed), which checks that the
// caller mounted it. lazy detaches at once and lets the kernel finish
// once nothing uses the mount (MNT_DETACH, fusermount3 -z).
//
// A busy mount is tried again for up to busyRetry: a process this one
// forks holds copies of its descriptors until it execs, so a mount this
// process still had a file open in an instant ago can be busy for that
// instant (a process that runs mounts and starts others side by side,
// as ovl's runner and tests do, meets it).
//
// Errors name target. A path that is not a mount point gives an error
// wrapping ErrNotMounted; a mount still busy one that says how to find
// who holds it. A FUSE daemon exits by itself once its mount is gone.
func Unmount(target string, lazy bool) error {
	flags := 0
	if lazy {
		flags = unix.MNT_DETACH
	}
	err := unix.Unmount(target, flags)
	for wait, deadline := time.Millisecond, time.Now().Add(busyRetry); errors.Is(err, unix.EBUSY) && time.Now().Before(deadline); wait = min(2*wait, 100*time.Millisecond) {
		time.Sleep(wait)
		err = unix.Unmount(target, flags)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM):
		return fusermountU(target, lazy)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("unmount %s: %w: %w", target, ErrNotMounted, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("unmount %s: %w (a process still uses it: its working directory or an open file; fuser -vm %s lists them)", target, err, target)
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// fusermountU unmounts target with fusermount3 -u (or fusermount -u), as
// an ordinary user unmounts the FUSE mounts it made.
func fusermountU(target string, lazy bool) error {
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		if bin, err = exec.LookPath("fusermount"); err != nil {
			return fmt.Errorf("unmount %s: umount(2) is not permitted here, and neither fusermount3 nor fusermount is installed (install fuse3)", target)
		}
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	out, err := exec.Command(bin, append(args, "--", target)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("unmount %s: %s -u: %w: %s", target, bin, err, strings.TrimSpace(string(out)))
	}
	return nil
}
