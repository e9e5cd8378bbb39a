package backend_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestUnmount checks the one unmount path on a tmpfs (the kind of mount
// does not matter to it): a plain directory is not a mount point, a busy
// mount stays and says so, naming the target, and a lazy unmount
// detaches a busy mount at once.
func TestUnmount(t *testing.T) {
	testutil.RequireRoot(t)
	target := t.TempDir()
	if err := backend.Unmount(target, false); !errors.Is(err, backend.ErrNotMounted) || !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), target) {
		t.Errorf("Unmount of a plain directory: %v, want ErrNotMounted (EINVAL) naming %s", err, target)
	}

	testutil.CleanupMount(t, target)
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(target, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := backend.Unmount(target, false); !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), target) {
		t.Errorf("Unmount with an open file: %v, want EBUSY naming %s", err, target)
	}
	if err := backend.Unmount(target, true); err != nil {
		t.Fatalf("lazy Unmount with an open file: %v", err)
	}
	if err := backend.Unmount(target, false); !errors.Is(err, backend.ErrNotMounted) {
		t.Errorf("Unmount after the lazy one: %v, want ErrNotMounted", err)
	}
}
