package native

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// usernsEntry mounts a stack inside a new user + mount namespace and
// changes it; see usernsMount.
const usernsEntry = "native-test-userns-mount"

func init() {
	reexec.Register(usernsEntry, func() {
		if err := usernsMount(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "in the user namespace:", err)
			os.Exit(1)
		}
	})
}

// usernsMount runs as "root" in a fresh user namespace: it mounts lower0,
// lower1 with upper and work on target, writes a file, deletes a lower
// file, replaces a lower directory, checks the merged view, and unmounts.
func usernsMount(args []string) error {
	if len(args) != 5 {
		return fmt.Errorf("want lower0 lower1 upper work target, got %q", args)
	}
	if !userns.InUserNamespace() {
		return fmt.Errorf("not in a user namespace")
	}
	if err := userns.MakePrivate(); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	spec := layer.Spec{Lowers: args[0:2], Upper: args[2], Work: args[3], Target: args[4], Namespace: layer.User}
	m, err := New().Mount(context.Background(), spec)
	if err != nil {
		return err
	}
	defer m.Unmount()
	mp := spec.Target
	if err := os.WriteFile(filepath.Join(mp, "new.txt"), []byte("new"), 0o644); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(mp, "gone.txt")); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(mp, "sub")); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(mp, "sub"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mp, "sub", "fresh"), nil, 0o644); err != nil {
		return err
	}
	des, err := os.ReadDir(filepath.Join(mp, "sub"))
	if err != nil {
		return err
	}
	if len(des) != 1 || des[0].Name() != "fresh" {
		return fmt.Errorf("recreated sub/ shows %v, want only fresh", des)
	}
	return m.Unmount()
}

// TestMountUnprivilegedInUserNamespace drops to uid 65534, mounts a stack
// with upper in a new user + mount namespace (userxattr) and checks from
// outside that the upper holds the kernel's format in user.overlay.*.
func TestMountUnprivilegedInUserNamespace(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t)
		return
	}
	root := testutil.SharedDir(t)
	lowers := mkdirs(t, filepath.Join(root, "l0"), filepath.Join(root, "l1"))
	upper, work, target := filepath.Join(root, "upper"), filepath.Join(root, "work"), filepath.Join(root, "merged")
	mkdirs(t, upper, work, target)
	t.Cleanup(func() {
		// The kernel leaves work/work with mode 000; its owner may remove
		// it only after opening it up again.
		os.Chmod(filepath.Join(work, "work"), 0o700)
	})
	writeTree(t, lowers[0], map[string]string{"a.txt": "top", "sub/x": "x"})
	writeTree(t, lowers[1], map[string]string{"a.txt": "bottom", "gone.txt": "g", "sub/y": "y"})

	cmd := userns.Command(usernsEntry, lowers[0], lowers[1], upper, work, target)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mount in a user namespace as uid %d: %v\n%s", os.Getuid(), err, out)
	}

	if got := readFile(t, filepath.Join(upper, "new.txt")); got != "new" {
		t.Errorf("upper/new.txt = %q, want %q", got, "new")
	}
	checkUpperMarkers(t, upper, "user.overlay.opaque")
	if got := testutil.Names(t, filepath.Join(upper, "sub")); !reflect.DeepEqual(got, []string{"fresh"}) {
		t.Errorf("upper/sub = %v, want [fresh]", got)
	}
	if got := testutil.Names(t, target); len(got) != 0 {
		t.Errorf("target outside the namespace shows %v, want it empty: the mount must stay inside", got)
	}
}

// TestMountUnprivilegedOutsideUserNamespace checks that an ordinary user
// who calls Mount in the initial namespace is told the backend is
// unavailable that way, and why.
func TestMountUnprivilegedOutsideUserNamespace(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t)
		return
	}
	root := testutil.SharedDir(t)
	spec := threeLayers(t, root)
	_, err := New().Mount(context.Background(), spec)
	if !errors.Is(err, backend.ErrUnavailable) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("Mount as uid %d outside a user namespace: %v, want ErrUnavailable wrapping EPERM", os.Getuid(), err)
	}
	if !strings.Contains(err.Error(), "user namespace") || !strings.Contains(err.Error(), spec.Target) {
		t.Errorf("error %q should name the target and say to use a user namespace", err)
	}
}
