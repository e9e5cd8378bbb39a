package fusefs

import (
	"log/slog"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCopySyncerDrains checks that the background syncer of copy-ups
// closes every descriptor it is given, those still queued when it is
// closed included, and syncs at once what comes after: a daemon that
// stops leaves no copy unsynced and no descriptor open.
func TestCopySyncerDrains(t *testing.T) {
	dir := t.TempDir()
	before := openFds(t)
	s := newCopySyncer(slog.Default())
	open := func() int {
		fd, err := unix.Openat(unix.AT_FDCWD, dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Skipf("O_TMPFILE in %s: %v", dir, err)
		}
		if _, err := unix.Write(fd, []byte("data")); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	for range 3 * copySyncBacklog {
		s.add(open(), "f")
	}
	s.close()
	s.add(open(), "after close")
	s.close() // twice is fine
	if after := openFds(t); after != before {
		t.Errorf("%d descriptors open after the syncer closed, %d before", after, before)
	}
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
