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
// goes through fusermount3).
func TestHugeDirectories(t *testing.T) {
	t.Run("root", func(t *testing.T) {
		testutil.RequireRoot(t)
		hugeDirectories(t, t.TempDir())
	})
	t.Run("nobody", func(t *testing.T) {
		if !testutil.InNobodyChild() {
			testutil.RunAsNobody(t)
			return
		}
		hugeDirectories(t, testutil.SharedDir(t))
	})
}

func hugeDirectories(t *testing.T, dir string) {
	s := newStack(t, dir, 2)
	const huge, half, whiteouts = 100000, 15000, 100
	makeFiles := func(d, prefix string, n int) {
		mustDo(t, os.MkdirAll(d, 0o755))
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		mustDo(t, err)
		defer unix.Close(fd)
		for i := 0; i < n; i++ {
			f, err := unix.Openat(fd, fmt.Sprintf("%s%06d", prefix, i), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			mustDo(t, err)
			unix.Close(f)
		}
	}
	makeFiles(filepath.Join(s.lowers[0], "huge"), "entry-with-a-longish-name-", huge)
	makeFiles(filepath.Join(s.lowers[1], "merged"), "low-", half)
	makeFiles(filepath.Join(s.lowers[0], "merged"), "top-", half)
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
