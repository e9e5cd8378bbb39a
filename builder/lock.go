package builder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockContainer takes the build lock of container name, waiting for a
// build of the same container in another process to finish. Builds of
// different containers do not wait for each other. The lock goes with
// the process if it dies.
func (s *Store) lockContainer(name string) (unlock func(), err error) {
	dir := filepath.Join(s.Dir, ".locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	p := filepath.Join(dir, name+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("build lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}
