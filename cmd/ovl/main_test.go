package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestMain keeps what the tests' ovl processes write (probe cache,
// transient copies) in a directory of the test process (testutil.Main),
// and removes the ovl binary the tests built.
func TestMain(m *testing.M) {
	code := testutil.Main(m)
	if testBinary.dir != "" {
		os.RemoveAll(testBinary.dir)
	}
	os.Exit(code)
}

// testBinary is the ovl binary the tests run, built once per test process
// into a directory every user can reach.
var testBinary struct {
	once      sync.Once
	dir, path string
	out       []byte
	err       error
}

// checkBuildOVL returns the ovl binary to test: $OVL_TEST_BINARY, or one
// built from this package once per test process, with ovl-fuse next to it.
func checkBuildOVL(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("OVL_TEST_BINARY"); bin != "" {
		return bin
	}
	b := &testBinary
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "ovl-test-bin-"); b.err != nil {
			return
		}
		if b.err = os.Chmod(b.dir, 0o755); b.err != nil {
			return
		}
		// ovl-fuse beside it, as make build puts it: the daemon of
		// ovl's FUSE mounts (fusefs.DefaultDaemon).
		b.path = filepath.Join(b.dir, "ovl")
		b.out, b.err = exec.Command("go", "build", "-o", b.dir+"/", ".", "../ovl-fuse").CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build ovl: %v\n%s", b.err, b.out)
	}
	return b.path
}
