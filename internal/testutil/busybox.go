package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BusyboxRoot makes a tiny container root at root from the host's static
// busybox (package busybox-static): the directories dirs (and bin),
// /bin/busybox, and a symlink to it in /bin for each of applets. It skips
// t when busybox is not installed, and fails it on any other error.
func BusyboxRoot(t testing.TB, root string, dirs, applets []string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skipf("busybox-static is not installed (apt-get install busybox-static): %v", err)
	}
	for _, d := range append([]string{"bin"}, dirs...) {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
}
