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

	"ovl/internal/testutil"
)

// TestPassthrough checks that with passthrough (a StrictOpen stack) the
// kernel reads an upper file itself, without the daemon reading it (its
// read byte count does not grow), and that without passthrough, and on a
// stack that sees no opens, the daemon serves the data.
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
			m, err := mountDaemon(context.Background(), s.spec(), mode.opts)
			mustDo(t, err)
			t.Cleanup(func() { m.Unmount() })
			pid := m.(*daemonMount).Pid()
			before := daemonReadBytes(t, pid)
			f, err := os.Open(filepath.Join(s.target, "big"))
			mustDo(t, err)
			n, err := io.Copy(io.Discard, f)
			f.Close()
			mustDo(t, err)
			if n != size {
				t.Fatalf("read %d bytes, want %d", n, size)
			}
			read := daemonReadBytes(t, pid) - before
			t.Logf("daemon read %d bytes to serve %d", read, size)
			if pt && read >= size/2 {
				t.Errorf("with passthrough the daemon read %d bytes of a %d-byte file", read, size)
			}
			if !pt && read < size {
				t.Errorf("without passthrough the daemon read only %d bytes of a %d-byte file", read, size)
			}
		})
	}
}

// daemonReadBytes is the rchar of process pid: bytes it read with read
// system calls (including pread and reads of /dev/fuse).
func daemonReadBytes(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	mustDo(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "rchar:"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			mustDo(t, err)
			return v
		}
	}
	t.Fatalf("no rchar in /proc/%d/io", pid)
	return 0
}
