package fusefs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

const envFailureDir = "OVL_TEST_FAILURE_DIR"

// TestMountRefusedSaysWhy mounts, as uid 65534, stacks it may not
// mount: a lower only root may read, an upper it may not write, a mount
// point it may not write (fusermount3 refuses). Each must fail with an
// error that names the path and the reason, leave nothing mounted, and
// never crash the daemon.
func TestMountRefusedSaysWhy(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RequireRoot(t)
		dir := testutil.SharedDir(t)
		// What only root owns, made here for the child.
		for _, d := range []string{"rootonly", "rootupper", "rootmnt"} {
			mustDo(t, os.Mkdir(filepath.Join(dir, d), 0o755))
		}
		mustDo(t, os.Chmod(filepath.Join(dir, "rootonly"), 0o700))
		testutil.RunAsNobody(t, envFailureDir+"="+dir)
		return
	}
	dir := os.Getenv(envFailureDir)
	cases := []struct {
		name   string
		mutate func(s *stack)
		want   []string // in the error
	}{
		{"root-only lower", func(s *stack) { s.lowers[0] = filepath.Join(dir, "rootonly") }, []string{"rootonly", "permission denied"}},
		{"unwritable upper", func(s *stack) { s.upper = filepath.Join(dir, "rootupper") }, []string{"rootupper", "not writable", "permission denied"}},
		{"unwritable mount point", func(s *stack) { s.target = filepath.Join(dir, "rootmnt") }, []string{"rootmnt", "fusermount3:"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStack(t, filepath.Join(dir, fmt.Sprint("s", i)), 1)
			c.mutate(s)
			testutil.CleanupMount(t, s.target)
			m, err := NewBackend().Mount(context.Background(), s.spec())
			if err == nil {
				m.Unmount()
				t.Fatal("mount succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "panic") || strings.Contains(err.Error(), "exited with code 256") && !strings.Contains(err.Error(), "fusermount3:") {
				t.Errorf("error %q: a crash, or fusermount3's refusal without its reason", err)
			}
			var st unix.Statfs_t
			if unix.Statfs(s.target, &st) == nil && st.Type == fuseSuperMagic {
				t.Error("left a mount behind")
			}
		})
	}
}

// TestManyLayersWithinDescriptorLimit serves 600 layers (the kernel
// stacks at most 500) with RLIMIT_NOFILE at 1024, which the layers and
// the directories of a lookup through all of them would exceed if cached
// without a bound, and checks that lookups and listings work; and that a
// stack the limit cannot hold is refused at mount, naming the limit.
func TestManyLayersWithinDescriptorLimit(t *testing.T) {
	testutil.RequireRoot(t)
	var saved syscall.Rlimit
	mustDo(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved))
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) })
	// The daemon inherits the limit (syscall.Setrlimit, so that Go does
	// not put the old soft limit back for the child).
	mustDo(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 1024, Max: 1024}))

	const layers = 600
	s := newStack(t, t.TempDir(), layers)
	for i, l := range s.lowers {
		writeFiles(t, l, map[string]string{
			"d/": "", fmt.Sprintf("d/f%03d", i): "x", fmt.Sprintf("d/e/g%03d", i): "y",
		})
	}
	mountFuse(t, s.spec())
	for _, rel := range []string{"d", "d/e"} {
		ents, err := os.ReadDir(filepath.Join(s.target, rel))
		if err != nil || len(ents) < layers {
			t.Fatalf("list %s through %d layers: %d entries, %v", rel, layers, len(ents), err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.target, "d/e/g000")); err != nil || string(b) != "y" {
		t.Errorf("read the bottom layer's file: %q %v", b, err)
	}
	mustDo(t, os.WriteFile(filepath.Join(s.target, "d/e/new"), []byte("z"), 0o644))

	t.Run("too many", func(t *testing.T) {
		big := newStack(t, t.TempDir(), 1000)
		m, err := NewBackend().Mount(context.Background(), big.spec())
		if err == nil {
			m.Unmount()
			t.Fatal("a stack of 1000 layers mounted with RLIMIT_NOFILE 1024")
		}
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
			t.Errorf("error %q does not name the limit", err)
		}
	})
}
