package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

const fuseSuperMagic = 0x65735546

func isFuseMount(t testing.TB, p string) bool {
	t.Helper()
	var st unix.Statfs_t
	mustDo(t, unix.Statfs(p, &st))
	return st.Type == fuseSuperMagic
}

func TestBackendIdentity(t *testing.T) {
	var b backend.Backend = NewBackend()
	if b.Name() != backend.FUSE || b.MaxLayers() != 0 {
		t.Errorf("Name %q MaxLayers %d; want %q and 0", b.Name(), b.MaxLayers(), backend.FUSE)
	}
}

// TestDaemonLife checks each way a mount ends: Unmount, fusermount3 -u,
// umount(2) and SIGTERM each leave nothing mounted and the daemon gone.
func TestDaemonLife(t *testing.T) {
	testutil.RequireRoot(t)
	ends := []struct {
		name string
		end  func(t *testing.T, m *daemonMount)
	}{
		{"Unmount", func(t *testing.T, m *daemonMount) { mustDo(t, m.Unmount()) }},
		{"fusermount3", func(t *testing.T, m *daemonMount) {
			if out, err := exec.Command("fusermount3", "-u", m.target).CombinedOutput(); err != nil {
				t.Fatalf("fusermount3 -u: %v: %s", err, out)
			}
		}},
		{"umount", func(t *testing.T, m *daemonMount) { mustDo(t, unix.Unmount(m.target, 0)) }},
		{"SIGTERM", func(t *testing.T, m *daemonMount) { mustDo(t, syscall.Kill(m.Pid(), syscall.SIGTERM)) }},
	}
	for _, e := range ends {
		t.Run(e.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), 1)
			writeFiles(t, s.lowers[0], map[string]string{"f": "data"})
			m := mountFuse(t, s.spec()).(*daemonMount)
			if !isFuseMount(t, s.target) {
				t.Fatal("Mount returned before the mount was live")
			}
			if b, err := os.ReadFile(filepath.Join(s.target, "f")); err != nil || string(b) != "data" {
				t.Fatalf("read through the mount: %q %v", b, err)
			}
			e.end(t, m)
			<-m.exited // the daemon exits by itself once its mount is gone
			if isFuseMount(t, s.target) {
				t.Errorf("still mounted after %s", e.name)
			}
			if err := syscall.Kill(m.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("daemon %d still there after %s: %v", m.Pid(), e.name, err)
			}
		})
	}
}

// TestMountErrors checks that a bad spec fails with an error naming the
// path at fault, and leaves nothing mounted and no daemon behind.
func TestMountErrors(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 1)
	cases := []struct {
		name   string
		mutate func(*layer.Spec)
		want   string
		is     error
	}{
		{"missing lower", func(sp *layer.Spec) { sp.Lowers = []string{filepath.Join(s.dir, "nope")} }, "nope", layer.ErrNotDir},
		{"upper without work", func(sp *layer.Spec) { sp.Work = "" }, "upper", layer.ErrIncomplete},
		{"work inside upper", func(sp *layer.Spec) { sp.Work = filepath.Join(sp.Upper) }, "work", layer.ErrOverlap},
		{"redirect_dir", func(sp *layer.Spec) { sp.Options.RedirectDir = true }, "redirect_dir", backend.ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := s.spec()
			c.mutate(&spec)
			m, err := NewBackend().Mount(context.Background(), spec)
			if err == nil {
				m.Unmount()
				t.Fatal("Mount succeeded")
			}
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q: want one naming %q, errors.Is %v", err, c.want, c.is)
			}
			if isFuseMount(t, s.target) {
				t.Error("left a mount behind")
			}
		})
	}
}

// TestCopyUpCoherentWithOpenReader checks that a descriptor opened
// read-only before a copy-up reads what is written through another one
// after it.
func TestCopyUpCoherentWithOpenReader(t *testing.T) {
	testutil.RequireRoot(t)
	for _, mode := range openModes {
		t.Run(mode.name, func(t *testing.T) {
			s := newStack(t, t.TempDir(), 1)
			writeFiles(t, s.lowers[0], map[string]string{"f": "old-data"})
			testutil.CleanupMount(t, s.target)
			m, err := mountDaemon(context.Background(), reexec.Self(), s.spec(), mode.opts)
			mustDo(t, err)
			t.Cleanup(func() { m.Unmount() })
			r, err := os.Open(filepath.Join(s.target, "f"))
			mustDo(t, err)
			defer r.Close()
			buf := make([]byte, 8)
			_, err = r.ReadAt(buf, 0)
			mustDo(t, err)
			w, err := os.OpenFile(filepath.Join(s.target, "f"), os.O_WRONLY, 0)
			mustDo(t, err)
			_, err = w.WriteAt([]byte("NEW"), 0)
			mustDo(t, err)
			mustDo(t, w.Close())
			_, err = r.ReadAt(buf, 0)
			mustDo(t, err)
			if string(buf) != "NEW-data" {
				t.Errorf("reader opened before the copy-up reads %q, want %q", buf, "NEW-data")
			}
			if b, _ := os.ReadFile(filepath.Join(s.lowers[0], "f")); string(b) != "old-data" {
				t.Errorf("the lower layer changed: %q", b)
			}
			// A second write through a fresh descriptor, now that the file
			// is in the upper (passthrough, where allowed).
			mustDo(t, os.WriteFile(filepath.Join(s.target, "f"), []byte("third"), 0o644))
			_, err = r.ReadAt(buf[:5], 0)
			mustDo(t, err)
			if string(buf[:5]) != "third" {
				t.Errorf("reader reads %q after a rewrite, want %q", buf[:5], "third")
			}
		})
	}
}

// TestDaemonNamedInPs checks that ps tells a daemon by what it serves:
// "ovl fuse-daemon TARGET", not /proc/self/exe.
func TestDaemonNamedInPs(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 1)
	m := mountFuse(t, s.spec()).(*daemonMount)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", m.Pid()))
	mustDo(t, err)
	got := strings.Join(strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), " ")
	if want := "ovl fuse-daemon " + s.target; got != want {
		t.Errorf("daemon's command line %q, want %q", got, want)
	}
}

// TestOtherUsersAdmitted reads through a root mount as uid 2, as a
// container's non-root process would: a world-readable file reads, a
// file only root may read does not (EACCES), as under kernel overlay.
func TestOtherUsersAdmitted(t *testing.T) {
	testutil.RequireRoot(t)
	read := func(t *testing.T, target string) string {
		var out []string
		for _, f := range []string{"public", "private", "dir/inner"} {
			b, err := exec.Command("setpriv", "--reuid=2", "--regid=2", "--clear-groups", "cat", filepath.Join(target, f)).CombinedOutput()
			msg := strings.ReplaceAll(strings.TrimSpace(string(b)), target, "MNT")
			out = append(out, fmt.Sprintf("%s: %v %s", f, err, msg))
		}
		return strings.Join(out, "; ")
	}
	build := func(s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"public": "for all", "private": "root only", "dir/inner": "in"})
		mustDo(t, os.Chmod(filepath.Join(s.lowers[0], "private"), 0o600))
		mustDo(t, os.Chmod(filepath.Join(s.lowers[0], "dir"), 0o700))
	}
	dir := testutil.SharedDir(t)
	k := newStack(t, filepath.Join(dir, "k"), 1)
	build(k)
	mountKernel(t, k.spec())
	want := read(t, k.target)
	for _, mode := range openModes[:2] {
		t.Run(mode.name, func(t *testing.T) {
			s := newStack(t, filepath.Join(dir, mode.name), 1)
			build(s)
			mountMode(t, s.spec(), mode.opts)
			if got := read(t, s.target); got != want {
				t.Errorf("as uid 2:\n got  %s\n want %s (kernel)", got, want)
			}
		})
	}
}

func TestUserAllowOther(t *testing.T) {
	for _, c := range []struct {
		conf string
		want bool
	}{
		{"", false},
		{"# user_allow_other\nmount_max = 1000\n", false},
		{"user_allow_other\n", true},
		{"mount_max = 10\n  user_allow_other  # let others in\n", true},
		{"user_allow_others\n", false},
	} {
		p := filepath.Join(t.TempDir(), "fuse.conf")
		mustDo(t, os.WriteFile(p, []byte(c.conf), 0o644))
		if got := userAllowOther(p); got != c.want {
			t.Errorf("userAllowOther(%q) = %v, want %v", c.conf, got, c.want)
		}
	}
	if userAllowOther(filepath.Join(t.TempDir(), "missing")) {
		t.Error("a missing fuse.conf allows other users")
	}
}

// TestDaemonBeside finds ovl-fuse next to a binary only when it is as
// trustworthy as that binary: same owner, writable by no one else.
func TestDaemonBeside(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, p string)
		found bool
	}{
		{"none", func(t *testing.T, p string) {}, false},
		{"regular", func(t *testing.T, p string) { writeExe(t, p, 0o755) }, true},
		{"group writable", func(t *testing.T, p string) { writeExe(t, p, 0o775) }, false},
		{"world writable", func(t *testing.T, p string) { writeExe(t, p, 0o757) }, false},
		{"not executable", func(t *testing.T, p string) { writeExe(t, p, 0o644) }, false},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			name  string
			setup func(t *testing.T, p string)
			found bool
		}{"another owner's", func(t *testing.T, p string) {
			writeExe(t, p, 0o755)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, false})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "ovl")
			writeExe(t, bin, 0o755)
			c.setup(t, filepath.Join(dir, DaemonName))
			got := DaemonBeside(bin)
			if want := filepath.Join(dir, DaemonName); c.found && got != want {
				t.Errorf("DaemonBeside = %q, want %q", got, want)
			} else if !c.found && got != "" {
				t.Errorf("DaemonBeside = %q, want none", got)
			}
		})
	}
}

func writeExe(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
