package copyback_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// stack makes two lowers, an upper with a work dir and a target.
func stack(t *testing.T) layer.Spec {
	base := t.TempDir()
	s := layer.Spec{
		Lowers: []string{filepath.Join(base, "l0"), filepath.Join(base, "l1")},
		Upper:  filepath.Join(base, "upper"), Work: filepath.Join(base, "work"),
		Target: filepath.Join(base, "target"), Namespace: layer.NamespaceFor(userns.Privileged()),
	}
	for _, d := range []string{s.Upper, s.Work, s.Target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(s.Lowers[1], "etc/passwd"), "root:x:0:0")
	write(t, filepath.Join(s.Lowers[1], "etc/motd"), "hello")
	write(t, filepath.Join(s.Lowers[1], "var/lib/x"), "x")
	write(t, filepath.Join(s.Lowers[0], "etc/motd"), "hello again")
	return s
}

func TestMountUnmountKeepsChangesAsLayer(t *testing.T) {
	t.Run("caller", func(t *testing.T) { testKeepChanges(t) })
	t.Run("nobody", func(t *testing.T) {
		if testutil.InNobodyChild() {
			testKeepChanges(t)
			return
		}
		testutil.RunAsNobody(t)
	})
}

func testKeepChanges(t *testing.T) {
	s := stack(t)
	m, err := copyback.New().Mount(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Target, "etc/motd")); string(b) != "hello again" {
		t.Fatalf("etc/motd in the copy = %q, want the top layer's", b)
	}
	write(t, filepath.Join(s.Target, "etc/new"), "new")
	if err := os.RemoveAll(filepath.Join(s.Target, "var")); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if names, _ := os.ReadDir(s.Target); len(names) != 0 {
		t.Errorf("target still holds %d entries after Unmount", len(names))
	}
	// The lowers are untouched (the upper and work changed, which is fine).
	for _, l := range s.Lowers {
		if _, err := os.Stat(filepath.Join(l, "etc/new")); err == nil {
			t.Errorf("a lower was written: %s", l)
		}
	}

	// Mounting again shows the kept changes.
	m, err = copyback.New().Mount(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	var got []string
	for _, l := range testutil.TreeListing(t, s.Target) {
		got = append(got, strings.Fields(l)[0])
	}
	want := []string{".", "etc", "etc/motd", "etc/new", "etc/passwd"}
	if !slices.Equal(got, want) {
		t.Errorf("after a remount: %v, want %v", got, want)
	}
}

func TestMountKernelReadsItsUpper(t *testing.T) {
	testutil.RequireRoot(t)
	s := stack(t)
	m, err := copyback.New().Mount(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(s.Target, "etc/passwd"), "changed")
	if err := os.RemoveAll(filepath.Join(s.Target, "var/lib")); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	if err := layer.Flatten(context.Background(), []string{s.Target}, tree); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	testutil.CleanupMount(t, mnt)
	opts := "lowerdir=" + strings.Join(append([]string{s.Upper}, s.Lowers...), ":")
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("kernel overlay of the copy backend's upper: %v", err)
	}
	got, want := testutil.TreeListing(t, mnt), testutil.TreeListing(t, tree)
	// The roots differ in mtime/mode by construction of t.TempDir; compare the rest.
	if !slices.Equal(got[1:], want[1:]) {
		t.Errorf("kernel overlay of the upper differs from the tree the copy held:\n got %v\nwant %v", got, want)
	}
}

func TestMountRefusesNonEmptyTarget(t *testing.T) {
	s := stack(t)
	write(t, filepath.Join(s.Target, "stray"), "x")
	_, err := copyback.New().Mount(context.Background(), s)
	if !errors.Is(err, copyback.ErrTargetNotEmpty) {
		t.Fatalf("Mount on a non-empty target: %v, want ErrTargetNotEmpty", err)
	}
	if names, _ := os.ReadDir(s.Target); len(names) != 1 {
		t.Errorf("Mount touched the non-empty target")
	}
}

func TestDiscardDropsChanges(t *testing.T) {
	s := stack(t)
	m, err := copyback.New().Mount(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(s.Target, "junk"), "junk")
	if err := m.(*copyback.Mount).Discard(); err != nil {
		t.Fatal(err)
	}
	if names, _ := os.ReadDir(s.Upper); len(names) != 0 {
		t.Errorf("Discard wrote %d entries into the upper", len(names))
	}
	if names, _ := os.ReadDir(s.Target); len(names) != 0 {
		t.Errorf("Discard left %d entries in the target", len(names))
	}
}

// TestDiscardRefusesWithMountInside: a host directory still bound into
// the copy must not be emptied along with it.
func TestDiscardRefusesWithMountInside(t *testing.T) {
	testutil.RequireRoot(t)
	s := stack(t)
	m, err := copyback.New().Mount(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	write(t, filepath.Join(host, "precious"), "keep me")
	mp := filepath.Join(s.Target, "var")
	testutil.CleanupMount(t, mp)
	if err := unix.Mount(host, mp, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := m.(*copyback.Mount).Discard(); err == nil || !strings.Contains(err.Error(), "still mounted") {
		t.Errorf("Discard with a bind mount inside: %v, want a refusal", err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "precious")); err != nil || string(b) != "keep me" {
		t.Errorf("the bound host directory was emptied: %v", err)
	}
}
