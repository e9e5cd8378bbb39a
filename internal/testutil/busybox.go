package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ovl-dev/ovl/internal/busybox"
)

// busyboxBinary returns the host's static busybox, skipping t when it is
// not installed.
func busyboxBinary(t testing.TB) string {
	t.Helper()
	bb, err := busybox.Find()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	return bb
}

// BusyboxRoot makes the tiny container root of package busybox at root
// (busybox-static, a link per applet, /etc, the directories a container
// runs with), plus the directories extraDirs. It skips t when busybox is
// not installed, and fails it on any other error.
func BusyboxRoot(t testing.TB, root string, extraDirs ...string) {
	t.Helper()
	if err := busybox.WriteDir(root, busyboxBinary(t)); err != nil {
		t.Fatal(err)
	}
	for _, d := range extraDirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// BusyboxTar writes the same root as a gzipped tarball to dst, the base
// of a test project's `!Tar` step. It skips t when busybox is not
// installed.
func BusyboxTar(t testing.TB, dst string) {
	t.Helper()
	if err := busybox.WriteTar(dst, busyboxBinary(t)); err != nil {
		t.Fatal(err)
	}
}
