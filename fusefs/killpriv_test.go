package fusefs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestPrivilegesDroppedOnChange checks, against kernel overlay, that
// changing a file drops its privileges as the kernel does: a write or
// truncate by a caller without CAP_FSETID clears set-user-ID and
// set-group-ID (with group execute), root's write keeps them, chown
// clears them, and any write or chown removes file capabilities (which a
// chmod, and so copy-up, keeps); for lower files (copied up by the
// change) and upper ones alike, with and without passthrough.
func TestPrivilegesDroppedOnChange(t *testing.T) {
	if _, err := exec.LookPath("setcap"); err != nil {
		t.Skip("setcap not found (package libcap2-bin)")
	}
	testutil.RequireRoot(t)
	for _, mode := range openModes {
		t.Run(mode.name, func(t *testing.T) { testPrivilegesDropped(t, mode.opts) })
	}
}

func testPrivilegesDropped(t *testing.T, opts Options) {
	const nobody = "65534"
	setup := func(dir string) {
		for _, f := range []struct {
			name string
			mode os.FileMode
			cap  bool
		}{
			{"own-write", 0o755 | os.ModeSetuid | os.ModeSetgid, false},
			{"own-trunc", 0o755 | os.ModeSetuid | os.ModeSetgid, false},
			{"own-write-nogx", 0o745 | os.ModeSetgid, false},
			{"root-write", 0o755 | os.ModeSetuid | os.ModeSetgid, false},
			{"root-chown", 0o755 | os.ModeSetuid | os.ModeSetgid, false},
			{"root-chown-none", 0o755 | os.ModeSetuid | os.ModeSetgid, false},
			{"cap-write", 0o755, true},
			{"cap-chown", 0o755, true},
			{"cap-chmod", 0o755, true},
		} {
			p := filepath.Join(dir, f.name)
			mustDo(t, os.WriteFile(p, []byte("data\n"), 0o644))
			mustDo(t, os.Chown(p, 65534, 65534))
			mustDo(t, os.Chmod(p, f.mode))
			if f.cap {
				if out, err := exec.Command("setcap", "cap_net_raw+ep", p).CombinedOutput(); err != nil {
					t.Fatalf("setcap %s: %v: %s", p, err, out)
				}
			}
		}
	}
	dir := t.TempDir()
	// Let uid 65534 reach the mounts.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		mustDo(t, os.Chmod(d, 0o755))
	}
	o := &oracle{t: t, k: newStack(t, filepath.Join(dir, "k"), 1), f: newStack(t, filepath.Join(dir, "f"), 1)}
	for _, s := range []*stack{o.k, o.f} {
		setup(s.lowers[0])
		up := filepath.Join(s.upper, "up")
		mustDo(t, os.Mkdir(up, 0o755))
		setup(up)
	}
	mountKernel(t, o.k.spec())
	fspec := o.f.spec()
	fspec.Options.AllowOther = true // the kernel's overlay lets everyone in
	testutil.CleanupMount(t, fspec.Target)
	m, err := mountDaemon(context.Background(), reexec.Self(), fspec, opts)
	mustDo(t, err)
	t.Cleanup(func() { m.Unmount() })
	sh := func(asNobody bool, script string) func(root string) error {
		return func(root string) error {
			args := []string{"sh", "-c", script}
			if asNobody {
				args = append([]string{"setpriv", "--reuid", nobody, "--regid", nobody, "--clear-groups"}, args...)
			}
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("%s in %s: %v: %s", script, root, err, out)
				return err
			}
			return nil
		}
	}
	for _, dir := range []string{".", "up"} {
		o.do(dir+": write as owner", sh(true, "echo x >> "+dir+"/own-write"))
		o.do(dir+": truncate as owner", sh(true, "truncate -s 2 "+dir+"/own-trunc"))
		o.do(dir+": write as owner, setgid without group execute", sh(true, "echo x >> "+dir+"/own-write-nogx"))
		o.do(dir+": write as root", sh(false, "echo x >> "+dir+"/root-write"))
		o.do(dir+": chown as root", sh(false, "chown 1000:1000 "+dir+"/root-chown"))
		o.do(dir+": chown(-1, -1) as root", func(root string) error {
			return os.Lchown(filepath.Join(root, dir, "root-chown-none"), -1, -1)
		})
		o.do(dir+": write to a file with capabilities", sh(false, "echo x >> "+dir+"/cap-write"))
		o.do(dir+": chown a file with capabilities", sh(false, "chown 1000 "+dir+"/cap-chown"))
		o.do(dir+": chmod a file with capabilities", sh(false, "chmod 750 "+dir+"/cap-chmod"))
		for _, name := range []string{"own-write", "own-trunc", "own-write-nogx", "root-write", "root-chown", "root-chown-none", "cap-write", "cap-chown", "cap-chmod"} {
			o.same(filepath.Join(dir, name), false)
			o.same(filepath.Join(dir, name), true)
		}
	}
}
