package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

func errorsIsErrno(err error, target error) bool { return err != nil && errors.Is(err, target) }

// umountFuseOverlayfs mounts a stack with fuse-overlayfs (a FUSE union
// that is not ovl's) on m, so that ovl umount is tested on any FUSE mount.
func umountFuseOverlayfs(t *testing.T, root string) string {
	t.Helper()
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		t.Fatalf("fuse-overlayfs is not installed (scripts/deps.sh installs it): %v", err)
	}
	d := mountDirs(t, root, "l", "u", "w", "m")
	mountTree(t, d[0], map[string]string{"f": "lower"})
	out, err := exec.Command("fuse-overlayfs", "-o", "lowerdir="+d[0]+",upperdir="+d[1]+",workdir="+d[2], d[3]).CombinedOutput()
	if err != nil {
		t.Fatalf("fuse-overlayfs: %v\n%s", err, out)
	}
	if mountRead(t, filepath.Join(d[3], "f")) != "lower" {
		t.Fatal("fuse-overlayfs mount does not show its lower")
	}
	return d[3]
}

// TestUmountFUSE unmounts a FUSE mount with ovl umount: as root with
// umount(2), as uid 65534 with fusermount3.
func TestUmountFUSE(t *testing.T) {
	if testutil.InNobodyChild() { // rerun of the nobody subtest, as uid 65534
		t.Run("nobody", func(t *testing.T) {
			umountFuseOverlayfsThenOVL(t, os.Getenv("OVL_TEST_BINARY"), os.Getenv("OVL_TEST_DIR"))
		})
		return
	}
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	for _, asNobody := range []bool{false, true} {
		name := "root"
		if asNobody {
			name = "nobody"
		}
		t.Run(name, func(t *testing.T) {
			root := testutil.SharedDir(t)
			m := filepath.Join(root, "m")
			testutil.CleanupMount(t, m)
			if asNobody {
				testutil.RunAsNobody(t, "OVL_TEST_BINARY="+bin, "OVL_TEST_DIR="+root)
			} else {
				umountFuseOverlayfsThenOVL(t, bin, root)
			}
			if _, ok := mountIsMounted(t, m); ok {
				t.Errorf("%s still mounted", m)
			}
		})
	}
}

func umountFuseOverlayfsThenOVL(t *testing.T, bin, root string) {
	t.Helper()
	m := umountFuseOverlayfs(t, root)
	if typ, ok := mountIsMounted(t, m); !ok || !strings.HasPrefix(typ, "fuse") {
		t.Fatalf("%s: mounted %v, type %q; want a FUSE mount", m, ok, typ)
	}
	if _, _, code := checkOVL(t, bin, nil, "umount", m); code != 0 {
		t.Fatalf("ovl umount of a FUSE mount exited %d", code)
	}
	if _, ok := mountIsMounted(t, m); ok {
		t.Fatalf("%s still mounted after ovl umount", m)
	}
}

// TestUmountCopy mounts a stack with `ovl mount --backend copy` and
// undoes it with `ovl umount`: the changes made in the copy land in the
// upper as kernel overlay keeps them, the target is emptied, and a second
// umount says there is nothing there. As root and as uid 65534.
func TestUmountCopy(t *testing.T) {
	if testutil.InNobodyChild() {
		umountCopyCLI(t, os.Getenv("OVL_TEST_BINARY"), os.Getenv("OVL_TEST_DIR"))
		return
	}
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	t.Run("root", func(t *testing.T) { umountCopyCLI(t, bin, t.TempDir()) })
	t.Run("nobody", func(t *testing.T) {
		testutil.RunAsNobody(t, "OVL_TEST_BINARY="+bin, "OVL_TEST_DIR="+testutil.SharedDir(t))
	})
}

func umountCopyCLI(t *testing.T, bin, root string) {
	t.Helper()
	d := mountDirs(t, root, "l", "u", "w", "m")
	l, u, w, m := d[0], d[1], d[2], d[3]
	mountTree(t, l, map[string]string{"keep": "k", "gone": "g", "dir/f": "f"})
	env := []string{"OVL_STATE_DIR=" + filepath.Join(root, "state"), "OVL_RUNTIME_DIR=" + filepath.Join(root, "run")}
	if _, errOut, code := checkOVL(t, bin, env, "mount", "--backend", "copy", "--lower", l, "--upper", u, "--work", w, m); code != 0 || !strings.Contains(errOut, "ovl umount") {
		t.Fatalf("ovl mount --backend copy: exit %d, stderr %q (want it to say ovl umount undoes it)", code, errOut)
	}
	if got := mountRead(t, filepath.Join(m, "dir/f")); got != "f" {
		t.Fatalf("the copy's dir/f = %q", got)
	}
	if err := os.WriteFile(filepath.Join(m, "new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(m, "gone")); err != nil {
		t.Fatal(err)
	}
	if _, _, code := checkOVL(t, bin, env, "umount", m); code != 0 {
		t.Fatalf("ovl umount of a copy exited %d", code)
	}
	if left, _ := os.ReadDir(m); len(left) != 0 {
		t.Errorf("the copy is still in %s after ovl umount: %d entries", m, len(left))
	}
	if got := mountRead(t, filepath.Join(u, "new")); got != "new" {
		t.Errorf("upper/new = %q, want the write made in the copy", got)
	}
	fd, err := unix.Open(u, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ents, _, err := layer.ReadDir(fd)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]layer.Kind{}
	for _, e := range ents {
		kinds[e.Name] = e.Kind
	}
	if kinds["gone"] != layer.Whiteout {
		t.Errorf("upper/gone is %v, want a whiteout for the file removed in the copy (upper: %v)", kinds["gone"], kinds)
	}
	if _, errOut, code := checkOVL(t, bin, env, "umount", m); code == 0 || !strings.Contains(errOut, "not a mount point, nor a copy") {
		t.Errorf("second ovl umount: exit %d, stderr %q; want it refused", code, errOut)
	}
}
