package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
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
