package podmantest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteConfig(t *testing.T) {
	dir := filepath.Join(os.TempDir(), "pmt"+filepath.Base(t.TempDir()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	env, err := WriteConfig(dir, "/usr/bin/fuse-overlayfs")
	if err != nil {
		t.Fatal(err)
	}
	storage, err := os.ReadFile(filepath.Join(dir, "storage.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(storage), `mount_program = "/usr/bin/fuse-overlayfs"`) {
		t.Errorf("storage.conf has no mount_program:\n%s", storage)
	}
	if want := "CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"); !strings.Contains(strings.Join(env, "\n"), want) {
		t.Errorf("env %v lacks %s", env, want)
	}
	if _, err := WriteConfig(dir, ""); err != nil {
		t.Fatal(err)
	}
	if storage, _ := os.ReadFile(filepath.Join(dir, "storage.conf")); strings.Contains(string(storage), "mount_program") {
		t.Errorf("kernel overlay's storage.conf names a mount_program:\n%s", storage)
	}
	long := filepath.Join(dir, strings.Repeat("x", MaxDir))
	if _, err := WriteConfig(long, ""); err == nil || !strings.Contains(err.Error(), "socket paths") {
		t.Errorf("a %d-character directory: got %v, want a refusal naming conmon's socket paths", len(long), err)
	}
}
