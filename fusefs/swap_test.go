package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// The layers of a stack may belong to someone other than the daemon: a
// root daemon serving layers an ordinary user owns (or an ordinary user's
// daemon and a file of that user outside the layers). An entry of a
// layer swapped for a symlink (or a fifo, a device) behind the daemon's
// back must never make it act on anything outside the layers.

// swapOp is an operation through the mount on a file whose layer entry
// has been swapped for a symlink to a file outside the layers.
type swapOp struct {
	name string
	do   func(p string) error
}

// swapOps are every operation that changes or reads a file by a node
// the kernel already knows: metadata, data, xattrs, links.
func swapOps() []swapOp {
	uid, gid := 1, 1
	if os.Geteuid() != 0 {
		uid, gid = os.Geteuid(), os.Getegid()
	}
	withFile := func(flags int, fn func(fd int) error) func(p string) error {
		return func(p string) error {
			fd, err := unix.Open(p, flags|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return fn(fd)
		}
	}
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	return []swapOp{
		{"chmod", func(p string) error { return os.Chmod(p, 0o666) }},
		{"chmod-setuid", func(p string) error { return os.Chmod(p, 0o4777) }},
		{"chown", func(p string) error { return os.Lchown(p, uid, gid) }},
		{"chown-none", func(p string) error { return os.Lchown(p, -1, -1) }},
		{"utimes", func(p string) error { return os.Chtimes(p, when, when) }},
		{"truncate", func(p string) error { return os.Truncate(p, 1) }},
		{"ftruncate", withFile(unix.O_WRONLY, func(fd int) error { return unix.Ftruncate(fd, 2) })},
		{"open-trunc", withFile(unix.O_WRONLY|unix.O_TRUNC, func(int) error { return nil })},
		{"write", withFile(unix.O_WRONLY, func(fd int) error { _, err := unix.Pwrite(fd, []byte("W"), 0); return err })},
		{"append", withFile(unix.O_WRONLY|unix.O_APPEND, func(fd int) error { _, err := unix.Write(fd, []byte("A")); return err })},
		{"fallocate", withFile(unix.O_WRONLY, func(fd int) error { return unix.Fallocate(fd, 0, 0, 8192) })},
		{"setxattr", func(p string) error { return unix.Setxattr(p, "user.new", []byte("v"), 0) }},
		{"removexattr", func(p string) error { return unix.Removexattr(p, "user.k") }},
		{"getxattr", func(p string) error {
			b := make([]byte, 64)
			n, err := unix.Getxattr(p, "user.host", b)
			if err == nil {
				return fmt.Errorf("read the outside file's xattr: %q", b[:n])
			}
			return err
		}},
		{"read", func(p string) error {
			b, err := os.ReadFile(p)
			if bytes.Contains(b, []byte("outside")) {
				return fmt.Errorf("read the outside file: %q", b)
			}
			return err
		}},
		{"link", func(p string) error { return os.Link(p, p+"-link") }},
	}
}

// TestLayerEntrySwappedForSymlink looks a file up through the mount,
// swaps its layer entry for a symlink to a file outside the layers, and
// runs each operation of swapOps on it, in the lower layer and (after a
// first change copied it up) in the upper: the outside file must stay
// exactly as it was (content, mode, owner, times, xattrs), in both of
// fusefs's modes; kernel overlay, on the same layers, for comparison. As
// root with layers of root's, as root with layers uid 65534 owns (it
// swaps them), and as uid 65534 (its daemon; the outside file is its own).
func TestLayerEntrySwappedForSymlink(t *testing.T) {
	t.Run("root", func(t *testing.T) {
		testutil.RequireRoot(t)
		swapCases(t, t.TempDir(), false)
	})
	t.Run("root-layers-of-nobody", func(t *testing.T) {
		testutil.RequireRoot(t)
		swapCases(t, testutil.SharedDir(t), true)
	})
	t.Run("nobody", func(t *testing.T) {
		if !testutil.InNobodyChild() {
			testutil.RunAsNobody(t)
			return
		}
		swapCases(t, testutil.SharedDir(t), false)
	})
}

func swapCases(t *testing.T, dir string, nobodyLayers bool) {
	mounters := kernelAndFusefs()
	if os.Geteuid() != 0 {
		mounters = mounters[1:] // no kernel overlay in place for uid 65534
	}
	n := 0
	for _, where := range []string{"lower", "upper"} {
		for _, op := range swapOps() {
			for _, m := range mounters {
				t.Run(where+"/"+op.name+"/"+m.name, func(t *testing.T) {
					n++
					caseDir := filepath.Join(dir, fmt.Sprint("s", n))
					host := outsideFile(t, filepath.Join(caseDir, "outside"))
					before := hostState(t, host)
					s := newStack(t, caseDir, 1)
					// The link is relative and the mount sits one level
					// deeper than the layers: resolved by the caller from
					// the mount (a chmod follows it once the kernel sees
					// it), it leads nowhere; only the daemon, following it
					// in the layer, would reach the outside file.
					s.target = filepath.Join(caseDir, "m", "nt")
					mustDo(t, os.MkdirAll(s.target, 0o755))
					writeFiles(t, s.lowers[0], map[string]string{"f": "layer data"})
					mustDo(t, unix.Setxattr(filepath.Join(s.lowers[0], "f"), "user.k", []byte("layer"), 0))
					if nobodyLayers {
						for _, d := range []string{s.lowers[0], s.upper, s.work} {
							chownTree(t, d, testutil.NobodyUID)
						}
					}
					m.mount(t, s)
					p := filepath.Join(s.target, "f")
					var st unix.Stat_t
					mustDo(t, unix.Lstat(p, &st))
					layerDir := s.lowers[0]
					if where == "upper" {
						mustDo(t, os.Chmod(p, 0o640)) // copies it up
						layerDir = s.upper
					}
					swapForSymlink(t, filepath.Join(layerDir, "f"), "../outside/secret", nobodyLayers)
					err := op.do(p)
					t.Logf("%s on a %s entry swapped for a symlink: %v", op.name, where, err)
					if after := hostState(t, host); after != before {
						t.Errorf("%s through the mount changed the file outside the layers:\n before %s\n after  %s", op.name, before, after)
					}
					if err != nil && strings.Contains(err.Error(), "outside") {
						t.Error(err)
					}
				})
			}
		}
	}
}

// outsideFile makes a file (0600, with xattrs, old times) in a new
// directory dir, outside any layer, and returns its path.
func outsideFile(t *testing.T, dir string) string {
	t.Helper()
	mustDo(t, os.MkdirAll(dir, 0o755))
	host := filepath.Join(dir, "secret")
	mustDo(t, os.WriteFile(host, []byte("outside data"), 0o600))
	mustDo(t, unix.Setxattr(host, "user.k", []byte("host"), 0))
	mustDo(t, unix.Setxattr(host, "user.host", []byte("host"), 0))
	past := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	mustDo(t, os.Chtimes(host, past, past))
	return host
}

// hostState describes a file completely: content, mode, owner, times
// (ctime changes with any change of metadata) and xattrs.
func hostState(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	mustDo(t, unix.Lstat(p, &st))
	b, err := os.ReadFile(p)
	mustDo(t, err)
	names, err := layer.ListXattrs(p)
	mustDo(t, err)
	var xs []string
	for _, n := range names {
		v, _ := layer.GetXattr(p, n)
		xs = append(xs, n+"="+string(v))
	}
	return fmt.Sprintf("mode %o owner %d:%d size %d mtime %d ctime %d content %q xattrs %v",
		st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Nano(), st.Ctim.Nano(), b, xs)
}

// swapForSymlink replaces the layer entry at p with a symlink to target,
// atomically (rename over it), as uid 65534 when asNobody.
func swapForSymlink(t *testing.T, p, target string, asNobody bool) {
	t.Helper()
	tmp := p + ".swap"
	if !asNobody {
		mustDo(t, os.Symlink(target, tmp))
		mustDo(t, os.Rename(tmp, p))
		return
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"sh", "-c", `ln -s "$1" "$2" && mv -T "$2" "$3"`, "swap", target, tmp, p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swap %s as uid 65534: %v: %s", p, err, out)
	}
}

// TestLayerEntrySwappedForFifo swaps a looked-up file's lower entry for
// a fifo: a daemon that opened it would block for ever (read) or feed
// it; each operation must return instead, in both of fusefs's modes, and
// the fifo never becomes a regular file.
func TestLayerEntrySwappedForFifo(t *testing.T) {
	testutil.RequireRoot(t)
	for _, mode := range openModes[:2] {
		// O_NONBLOCK: the caller's own open of the fifo, once the
		// kernel sees it, must not block the test either.
		for _, op := range []swapOp{
			{"read", func(p string) error {
				fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				_, err = unix.Read(fd, make([]byte, 16))
				return err
			}},
			{"write", func(p string) error {
				fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				_, err = unix.Write(fd, []byte("x"))
				return err
			}},
			{"chmod", func(p string) error { return os.Chmod(p, 0o600) }},
		} {
			t.Run(mode.name+"/"+op.name, func(t *testing.T) {
				s := newStack(t, t.TempDir(), 1)
				writeFiles(t, s.lowers[0], map[string]string{"f": "layer data"})
				mountMode(t, s.spec(), mode.opts)
				p := filepath.Join(s.target, "f")
				var st unix.Stat_t
				mustDo(t, unix.Lstat(p, &st))
				lf := filepath.Join(s.lowers[0], "f")
				mustDo(t, unix.Mkfifo(lf+".swap", 0o666))
				mustDo(t, os.Rename(lf+".swap", lf))
				t.Logf("%s on a lower entry swapped for a fifo: %v", op.name, op.do(p))
				// The kernel may look the name up again and act on the
				// fifo as a fifo; nothing may turn it into a regular file.
				var ust unix.Stat_t
				if err := unix.Lstat(filepath.Join(s.upper, "f"), &ust); err == nil && ust.Mode&unix.S_IFMT != unix.S_IFIFO {
					t.Errorf("upper f is of mode %o, want none or a fifo", ust.Mode)
				}
			})
		}
	}
}
