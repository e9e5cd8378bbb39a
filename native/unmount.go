package native

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Unmount detaches the overlay mounted on target. A busy mount is left in
// place and the error says so; errors name the target and wrap the errno.
func Unmount(target string) error {
	err := unix.Unmount(target, 0)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("unmount %s: %w (a process still uses it: its working directory or an open file; fuser -vm %s lists them)", target, err, target)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("unmount %s: %w (nothing is mounted there)", target, err)
	default:
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}
