package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

var (
	binDir   string
	buildOvl sync.Once
	ovlPath  string
	ovlErr   error
)

func TestMain(m *testing.M) {
	code := testutil.Main(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ovlBinary builds ovl and ovl-fuse once per test run, into a temp dir
// that every uid can read and execute, and returns ovl's path.
func ovlBinary(t *testing.T) string {
	t.Helper()
	buildOvl.Do(func() {
		binDir, ovlErr = os.MkdirTemp("", "ovl-integration-bin-")
		if ovlErr != nil {
			return
		}
		if ovlErr = os.Chmod(binDir, 0o755); ovlErr != nil {
			return
		}
		// ovl-fuse beside it, as make build puts it: the daemon of
		// ovl's FUSE mounts, podman's through `ovl -o` included.
		ovlPath = filepath.Join(binDir, "ovl")
		out, err := exec.Command("go", "build", "-o", binDir+"/", "../cmd/ovl", "../cmd/ovl-fuse").CombinedOutput()
		if err != nil {
			ovlErr = fmt.Errorf("go build ../cmd/ovl ../cmd/ovl-fuse: %w\n%s", err, out)
		}
	})
	if ovlErr != nil {
		t.Fatal(ovlErr)
	}
	return ovlPath
}

// baseRoot makes the root of the base image every podman test imports:
// busybox, users root and nobody, and files of each kind and mode that
// the workloads change: a tree under /data to delete, rename and
// hard-link, a root-only secret, a world-readable motd, a home owned by
// nobody.
func baseRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	testutil.BusyboxRoot(t, root, "home/user", "data/a", "data/b/sub", "data/c", "data/d/deep")
	files := map[string]struct {
		text string
		mode os.FileMode
	}{
		"etc/passwd":       {"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home/user:/bin/sh\n", 0o644},
		"etc/group":        {"root:x:0:\nnogroup:x:65534:\n", 0o644},
		"etc/motd":         {"welcome\n", 0o644},
		"etc/secret":       {"root only\n", 0o600},
		"data/a/file1":     {"a1\n", 0o644},
		"data/a/file2":     {"a2\n", 0o644},
		"data/b/sub/deep":  {"deep\n", 0o640},
		"data/c/orig":      {"original\n", 0o644},
		"data/d/deep/gone": {"gone\n", 0o644},
		"data/d/also-gone": {"also gone\n", 0o755},
	}
	for name, f := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(f.text), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(root, "home/user"), testutil.NobodyUID, testutil.NobodyGID); err != nil {
		t.Fatal(err)
	}
	return root
}
