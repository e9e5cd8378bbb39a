package fusefs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestVolatileStack checks that a volatile stack (no syncs on copy-up or
// fsync, for throw-away uppers) still copies up completely: appends and
// an fsync through fusefs leave an upper that kernel overlay, mounted on
// it afterwards, shows with the same contents.
func TestVolatileStack(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 1)
	writeFiles(t, s.lowers[0], map[string]string{
		"a/b/file": "lower data\n",
		"other":    "untouched\n",
	})
	spec := s.spec()
	spec.Options.Volatile = true
	m := mountFuse(t, spec)
	f, err := os.OpenFile(filepath.Join(s.target, "a/b/file"), os.O_WRONLY|os.O_APPEND, 0)
	mustDo(t, err)
	_, err = f.WriteString("appended\n")
	mustDo(t, err)
	if err := f.Sync(); err != nil {
		t.Errorf("fsync on a volatile stack: %v", err)
	}
	mustDo(t, f.Close())
	want := "lower data\nappended\n"
	if got := string(must(os.ReadFile(filepath.Join(s.target, "a/b/file")))); got != want {
		t.Fatalf("through fusefs: %q, want %q", got, want)
	}
	mustDo(t, m.Unmount())

	if got := string(must(os.ReadFile(filepath.Join(s.upper, "a/b/file")))); got != want {
		t.Fatalf("upper copy: %q, want %q", got, want)
	}
	if _, err := os.Lstat(filepath.Join(s.upper, "other")); !os.IsNotExist(err) {
		t.Errorf("untouched file copied up: %v", err)
	}
	kt := filepath.Join(t.TempDir(), "k")
	mustDo(t, os.Mkdir(kt, 0o755))
	kspec := s.spec()
	kspec.Target = kt
	kspec.Work = filepath.Join(t.TempDir(), "kwork")
	mustDo(t, os.Mkdir(kspec.Work, 0o755))
	mountKernel(t, kspec)
	defer unix.Unmount(kt, 0)
	if got := string(must(os.ReadFile(filepath.Join(kt, "a/b/file")))); got != want {
		t.Errorf("kernel overlay on the volatile upper: %q, want %q", got, want)
	}
}
