package fusefs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestPassthrough checks that with passthrough (a StrictOpen stack) the
// kernel reads an upper file itself, without asking the daemon (which
// then sees a handful of requests, not one per chunk), and that without
// passthrough, and on a stack that sees no opens, the daemon serves the
// data. Requests are counted as the daemon's read system calls: each is
// one read of /dev/fuse (the data itself is spliced, which no counter
// of /proc/PID/io sees).
func TestPassthrough(t *testing.T) {
	testutil.RequireRoot(t)
	if !passthroughAllowed() {
		t.Skip("FUSE passthrough needs kernel 6.9+ and CAP_SYS_ADMIN in the initial namespace")
	}
	const size = 32 << 20
	for _, mode := range openModes {
		pt := mode.opts.StrictOpen && !mode.opts.NoPassthrough
		t.Run(mode.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), 1)
			data := strings.Repeat("0123456789abcdef", size/16)
			mustDo(t, os.WriteFile(filepath.Join(s.upper, "big"), []byte(data), 0o644))
			testutil.CleanupMount(t, s.target)
			m, err := mountDaemon(context.Background(), reexec.Self(), s.spec(), mode.opts)
			mustDo(t, err)
			t.Cleanup(func() { m.Unmount() })
			pid := m.(*daemonMount).Pid()
			before := daemonReads(t, pid)
			f, err := os.Open(filepath.Join(s.target, "big"))
			mustDo(t, err)
			n, err := io.Copy(io.Discard, f)
			f.Close()
			mustDo(t, err)
			if n != size {
				t.Fatalf("read %d bytes, want %d", n, size)
			}
			// A READ carries at most maxWrite bytes.
			const minReads = size / maxWrite
			reads := daemonReads(t, pid) - before
			t.Logf("daemon made %d reads to serve %d bytes", reads, size)
			if pt && reads >= minReads/2 {
				t.Errorf("with passthrough the daemon made %d reads to serve a %d-byte file", reads, size)
			}
			if !pt && reads < minReads {
				t.Errorf("without passthrough the daemon made only %d reads (%d requests at least) to serve a %d-byte file", reads, minReads, size)
			}
		})
	}
}

// daemonReads is the syscr of process pid: its read system calls
// (including pread and reads of /dev/fuse).
func daemonReads(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	mustDo(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "syscr:"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			mustDo(t, err)
			return v
		}
	}
	t.Fatalf("no syscr in /proc/%d/io", pid)
	return 0
}
