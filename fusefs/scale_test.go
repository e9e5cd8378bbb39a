package fusefs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// daemonRSSBound is the resident memory the daemon may use after listing
// and stat-ing a 100k-entry directory and a 2-layer 30k-file directory.
const daemonRSSBound = 256 << 20

// TestHugeDirectories lists a directory of 100,000 entries and a
// directory merged from two layers of 15,000 files each (with
// whiteouts), stats every entry, and checks the counts and the daemon's
// resident memory; as root and as an unprivileged user (then the mount
// goes through fusermount3), side by side over the same lower layers,
// and beside the package's other long tests.
func TestHugeDirectories(t *testing.T) {
	t.Parallel()
	if testutil.InNobodyChild() {
		t.Run("nobody", func(t *testing.T) {
			hugeDirectories(t, testutil.SharedDir(t), strings.Split(os.Getenv(envHugeLowers), ":"))
		})
		return
	}
	testutil.RequireRoot(t)
	lowers := hugeLowers(t, testutil.SharedDir(t))
	t.Run("root", func(t *testing.T) {
		t.Parallel()
		hugeDirectories(t, t.TempDir(), lowers)
	})
	t.Run("nobody", func(t *testing.T) {
		t.Parallel()
		testutil.RunAsNobody(t, envHugeLowers+"="+strings.Join(lowers, ":"))
	})
}

// envHugeLowers passes the lower layers to the unprivileged child.
const envHugeLowers = "OVL_TEST_HUGE_LOWERS"

// The sizes of hugeLowers: a directory of huge files in the top layer,
// one of half files in each layer, and whiteouts made through the mount.
const huge, half, whiteouts = 100000, 15000, 100

// hugeLowers makes the two lower layers under dir, for every user: the
// directories are 0777, so that uid 65534 may remove from them through
// the mount, as their owner may.
func hugeLowers(t *testing.T, dir string) []string {
	lowers := []string{filepath.Join(dir, "lower0"), filepath.Join(dir, "lower1")}
	makeFiles := func(d, prefix string, n int) {
		mustDo(t, os.MkdirAll(d, 0o755))
		mustDo(t, os.Chmod(d, 0o777))
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		mustDo(t, err)
		defer unix.Close(fd)
		for i := 0; i < n; i++ {
			f, err := unix.Openat(fd, fmt.Sprintf("%s%06d", prefix, i), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			mustDo(t, err)
			unix.Close(f)
		}
	}
	makeFiles(filepath.Join(lowers[0], "huge"), "entry-with-a-longish-name-", huge)
	makeFiles(filepath.Join(lowers[1], "merged"), "low-", half)
	makeFiles(filepath.Join(lowers[0], "merged"), "top-", half)
	return lowers
}

// hugeDirectories mounts lowers with an upper in dir and lists and stats
// them through the mount.
func hugeDirectories(t *testing.T, dir string, lowers []string) {
	s := newStack(t, dir, 0)
	s.lowers = lowers
	m := mountFuse(t, s.spec())
	pid := m.(*daemonMount).Pid()
	for i := 0; i < whiteouts; i++ {
		mustDo(t, os.Remove(filepath.Join(s.target, "merged", fmt.Sprintf("low-%06d", i))))
	}
	for _, c := range []struct {
		dir  string
		want int
	}{{"huge", huge}, {"merged", 2*half - whiteouts}} {
		for round := 0; round < 2; round++ {
			n := 0
			p := filepath.Join(s.target, c.dir)
			ents, err := os.ReadDir(p)
			mustDo(t, err)
			for _, e := range ents {
				var st unix.Stat_t
				mustDo(t, unix.Lstat(filepath.Join(p, e.Name()), &st))
				n++
			}
			if n != c.want {
				t.Errorf("%s: %d entries, want %d", c.dir, n, c.want)
			}
		}
	}
	rss := processRSS(t, pid)
	t.Logf("daemon RSS after listing and stat-ing %d + %d entries twice: %d MiB (bound %d MiB)", huge, 2*half, rss>>20, daemonRSSBound>>20)
	if rss > daemonRSSBound {
		t.Errorf("daemon RSS %d MiB, over the bound of %d MiB", rss>>20, daemonRSSBound>>20)
	}
}

// processRSS reads the resident set size of process pid.
func processRSS(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	mustDo(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			mustDo(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
