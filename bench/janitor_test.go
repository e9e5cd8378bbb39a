package bench

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestSweepMounts leaves two nested mounts behind, as a bench killed with
// SIGKILL would, and checks the next run's sweep finds and removes both.
func TestSweepMounts(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	outer := filepath.Join(dir, "scratch", "a b") // a space, escaped in mountinfo
	inner := filepath.Join(outer, "inner")
	if err := os.MkdirAll(outer, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.CleanupMount(t, inner)
	testutil.CleanupMount(t, outer)
	if err := unix.Mount("tmpfs", outer, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	got, err := MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != inner || got[1] != outer {
		t.Fatalf("MountsUnder = %q, want the inner mount first, then the outer", got)
	}
	n, err := SweepMounts(dir)
	if err != nil || n != 2 {
		t.Fatalf("SweepMounts = %d, %v; want 2 unmounted", n, err)
	}
	if left, _ := MountsUnder(dir); len(left) != 0 {
		t.Fatalf("mounts left after the sweep: %q", left)
	}
}
