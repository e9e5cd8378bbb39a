package fusefs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// envNofileChild marks the process TestManyLayersWithinDescriptorLimit
// runs with a lowered RLIMIT_NOFILE (prlimit): a test process cannot
// raise its hard limit back without CAP_SYS_RESOURCE, so the test never
// lowers its own.
const envNofileChild = "OVL_TEST_NOFILE_CHILD"

// TestManyLayersWithinDescriptorLimit serves 600 layers (the kernel
// stacks at most 500) with a soft RLIMIT_NOFILE of 1024 and a hard one of
// 4096: the daemon raises the soft limit, and bounds what it caches by
// it, so lookups and listings through every layer work (the layers and a
// lookup's copies of a directory in each take 1,200 descriptors); with a
// hard limit of 1024 the same stack is refused at mount, naming the
// limit.
func TestManyLayersWithinDescriptorLimit(t *testing.T) {
	for _, c := range []struct {
		name, limit string
		run         func(t *testing.T)
	}{
		{"fits", "1024:4096", manyLayersFit},
		{"too many", "1024:1024", manyLayersRefused},
	} {
		t.Run(c.name, func(t *testing.T) {
			if os.Getenv(envNofileChild) == "1" {
				c.run(t)
				return
			}
			testutil.RequireRoot(t)
			run := "^TestManyLayersWithinDescriptorLimit$/^" + strings.ReplaceAll(c.name, " ", "_") + "$"
			cmd := exec.Command("prlimit", "--nofile="+c.limit, os.Args[0], "-test.run", run, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), envNofileChild+"=1")
			out, err := cmd.CombinedOutput()
			t.Logf("with RLIMIT_NOFILE %s:\n%s", c.limit, out)
			if err != nil {
				t.Fatalf("test with RLIMIT_NOFILE %s failed: %v", c.limit, err)
			}
		})
	}
}

func manyLayersFit(t *testing.T) {
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
}

func manyLayersRefused(t *testing.T) {
	s := newStack(t, t.TempDir(), 600)
	m, err := NewBackend().Mount(context.Background(), s.spec())
	if err == nil {
		m.Unmount()
		t.Fatal("a stack of 600 layers mounted with RLIMIT_NOFILE 1024")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Errorf("error %q does not name the limit", err)
	}
}
