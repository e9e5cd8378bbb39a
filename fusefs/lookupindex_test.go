package fusefs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestCompareLookupDeepStack times cold lookups through a 20-layer stack
// sharing one directory (2,000 names spread over the layers, plus 2,000
// names no layer has) on fusefs and fuse-overlayfs, a fresh mount and
// dropped caches each round, and logs the times. It runs only with
// OVL_BENCH=1: timings are no assertion.
func TestCompareLookupDeepStack(t *testing.T) {
	if os.Getenv("OVL_BENCH") != "1" {
		t.Skip("set OVL_BENCH=1 to time cold lookups through a deep stack")
	}
	testutil.RequireRoot(t)
	const layers, perLayer = 20, 100
	s := newStack(t, t.TempDir(), 0)
	for i := 0; i < layers; i++ {
		// Not newStack's names: past ten they hold a ':', which
		// fuse-overlayfs's lowerdir cannot take.
		s.lowers = append(s.lowers, filepath.Join(s.dir, fmt.Sprintf("l%02d", i)))
	}
	var names []string
	for i, l := range s.lowers {
		for j := 0; j < perLayer; j++ {
			name := fmt.Sprintf("f-%d-%d", i, j)
			mustDo(t, os.MkdirAll(filepath.Join(l, "d"), 0o755))
			mustDo(t, os.WriteFile(filepath.Join(l, "d", name), nil, 0o644))
			names = append(names, name, "missing-"+name)
		}
	}
	statAll := func() time.Duration {
		mustDo(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
		start := time.Now()
		var st unix.Stat_t
		for _, n := range names {
			err := unix.Lstat(filepath.Join(s.target, "d", n), &st)
			if (err == nil) == strings.HasPrefix(n, "missing-") {
				t.Fatalf("lstat %s: %v", n, err)
			}
		}
		return time.Since(start)
	}
	for round := 0; round < 3; round++ {
		m, err := NewBackend().Mount(context.Background(), s.spec())
		mustDo(t, err)
		d := statAll()
		mustDo(t, m.Unmount())
		out, err := exec.Command("fuse-overlayfs", "-o", "lowerdir="+strings.Join(s.lowers, ":")+",upperdir="+s.upper+",workdir="+s.work, s.target).CombinedOutput()
		if err != nil {
			t.Fatalf("fuse-overlayfs: %v: %s", err, out)
		}
		p := statAll()
		mustDo(t, unix.Unmount(s.target, 0))
		t.Logf("round %d: fusefs %v, fuse-overlayfs %v (%.2fx)", round, d, p, float64(d)/float64(p))
	}
}
