package runner_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
)

// This file tests runs where root is not privileged: root without
// CAP_SYS_ADMIN (a default Docker or podman container), and runs on the
// copy backend where no namespace can be made (chroot).

// TestRunAsRootWithoutCapSysAdmin runs as root without CAP_SYS_ADMIN:
// the selector picks kernel overlay in a user namespace, and a writable
// run, a snapshot volume and a copy-backend run work there, with the
// files' owners as they are on disk (root maps every id as itself) and
// the root unchanged.
func TestRunAsRootWithoutCapSysAdmin(t *testing.T) {
	if !testutil.InRootWithoutChild() {
		testutil.RunAsRootWithout(t, []string{"sys_admin"})
		return
	}
	root := makeRoot(t)
	if err := os.Chown(filepath.Join(root, "var/lib/state"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	before := testutil.TreeHash(t, root)
	d, err := selector.Select(context.Background(), selector.Options{Backend: "auto", LayerDir: t.TempDir(), NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if d.Backend != backend.Native || d.Isolation != selector.IsolateUserns {
		t.Fatalf("decision %s isolated by %s, want native in a user namespace (reasons %q)", d.Backend, d.Isolation, d.Reasons)
	}
	copyD := decisionFor(t, backend.Copy)
	if copyD.Isolation != selector.IsolateUserns {
		t.Errorf("forced copy isolated by %s, want %s", copyD.Isolation, selector.IsolateUserns)
	}
	for _, d := range []selector.Decision{d, copyD} {
		cfg := runner.Config{Layers: []string{root}, Writable: true, Decision: d,
			Volumes: []runner.Volume{{Path: "/etc", Kind: runner.Snapshot, UID: -1, GID: -1}}}
		out := mustRun(t, cfg, "sh", "-c", `set -e
stat -c "%u:%g" /var/lib/state
chown 4321:8765 /var/lib/state && stat -c "%u:%g" /var/lib/state
echo changed > /etc/hostname && cat /etc/hostname
rm -r /var/lib && echo removed`)
		if want := "1234:5678\n4321:8765\nchanged\nremoved\n"; out != want {
			t.Errorf("%s backend: the run printed %q, want %q", d.Backend, out, want)
		}
	}
	if testutil.TreeHash(t, root) != before {
		t.Errorf("the runs changed ROOT")
	}
}

// chrootDecision is the copy backend where no namespace can be made.
func chrootDecision(t *testing.T) selector.Decision {
	d := decisionFor(t, backend.Copy)
	d.Isolation = selector.IsolateChroot
	return d
}

// TestChrootRun runs on the copy backend without namespaces, entering
// the copy with chroot: the command's exit status and output, its
// changes thrown away (or kept with --keep-changes), snapshot and tmpfs
// volumes on the copy, a command not found; and what cannot work
// without a mount (a bind volume, the project at /work) refused, saying
// what is missing.
func TestChrootRun(t *testing.T) {
	testutil.RequireRoot(t)
	root := makeRoot(t)
	before := testutil.TreeHash(t, root)
	d := chrootDecision(t)
	from := filepath.Join(t.TempDir(), "from")
	if err := os.MkdirAll(from, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(from, "other"), []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := runner.Config{Layers: []string{root}, Writable: true, Decision: d, Volumes: []runner.Volume{
		{Path: "/var/lib", Kind: runner.Snapshot, From: from, UID: -1, GID: -1},
		{Path: "/etc/sub", Kind: runner.Tmpfs, UID: 7, GID: 8},
	}}
	out, errOut, res, err := run(t, cfg, "sh", "-c", `cat /etc/hostname; ls /var/lib; ls -A /etc/sub; stat -c "%u:%g" /etc/sub
echo x > /dev/null && echo null-ok
echo new > /etc/new; rm /etc/passwd; exit 7`)
	if err != nil {
		t.Fatalf("chroot run: %v\n%s", err, errOut)
	}
	if want := "box\nother\n7:8\nnull-ok\n"; out != want || res.ExitCode != 7 || res.Backend != backend.Copy {
		t.Errorf("chroot run: exit %d on %s, printed %q; want exit 7 on copy and %q\nstderr: %s", res.ExitCode, res.Backend, out, want, errOut)
	}
	if testutil.TreeHash(t, root) != before {
		t.Errorf("the chroot run changed ROOT")
	}

	keep := filepath.Join(t.TempDir(), "layer")
	cfg = runner.Config{Layers: []string{root}, Writable: true, KeepChanges: keep, Decision: d}
	mustRun(t, cfg, "sh", "-c", "echo kept > /etc/kept; rm /etc/hostname")
	if b, err := os.ReadFile(filepath.Join(keep, "etc/kept")); err != nil || string(b) != "kept\n" {
		t.Errorf("--keep-changes: etc/kept in the layer: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(keep, "etc/hostname")); err != nil {
		t.Errorf("--keep-changes: no whiteout for etc/hostname in the layer: %v", err)
	}

	_, _, res, err = run(t, runner.Config{Layers: []string{root}, Decision: d}, "no-such-command")
	if !errors.Is(err, runner.ErrCommandNotFound) || res.ExitCode != 127 {
		t.Errorf("a missing command: exit %d, %v; want 127 and ErrCommandNotFound", res.ExitCode, err)
	}
	for name, cfg := range map[string]runner.Config{
		"bind volume": {Layers: []string{root}, Decision: d, Volumes: []runner.Volume{{Path: "/var/lib", Kind: runner.Bind, HostDir: from, UID: -1, GID: -1}}},
		"bind-work":   {Layers: []string{root}, Decision: d, BindWork: from},
	} {
		_, _, res, err := run(t, cfg, "true")
		if !errors.Is(err, runner.ErrNoIsolation) || res.ExitCode != 125 || !strings.Contains(err.Error(), "needs a") {
			t.Errorf("%s without namespaces: exit %d, %v; want 125 and ErrNoIsolation saying what it needs", name, res.ExitCode, err)
		}
	}
	if testutil.TreeHash(t, root) != before {
		t.Errorf("the chroot runs changed ROOT")
	}
	noMountsUnder(t, root)
}

// TestChrootRunWithoutCapSysChroot: where neither a namespace nor chroot
// is allowed, a run fails before it starts, naming what is missing.
func TestChrootRunWithoutCapSysChroot(t *testing.T) {
	if !testutil.InRootWithoutChild() {
		testutil.RunAsRootWithout(t, []string{"sys_admin", "sys_chroot"})
		return
	}
	root := makeRoot(t)
	_, _, res, err := run(t, runner.Config{Layers: []string{root}, Writable: true, Decision: chrootDecision(t)}, "true")
	if !errors.Is(err, runner.ErrNoIsolation) || res.ExitCode != 125 || !strings.Contains(err.Error(), "CAP_SYS_CHROOT") {
		t.Errorf("a run without namespaces nor chroot: exit %d, %v; want 125 and ErrNoIsolation naming CAP_SYS_CHROOT", res.ExitCode, err)
	}
}

// TestWritableRunOfForeignRoot: an ordinary user's writable run of a
// root-owned tree on native fails to write where only root may, and ovl
// says why, not only the shell's "Permission denied".
func TestWritableRunOfForeignRoot(t *testing.T) {
	if testutil.InNobodyChild() {
		cfg := runner.Config{Layers: []string{os.Getenv("OVL_TEST_ROOT")}, Writable: true, Decision: decisionFor(t, backend.Native)}
		_, errOut, res, err := run(t, cfg, "sh", "-c", "echo x > /etc/new")
		if err != nil || res.ExitCode == 0 {
			t.Fatalf("writing a root-owned directory: exit %d, %v; want the command to fail\n%s", res.ExitCode, err, errOut)
		}
		if !strings.Contains(errOut, "ovl: note: the container root") || !strings.Contains(errOut, "belongs to uid 0") {
			t.Errorf("stderr %q says nothing from ovl about the root's owner", errOut)
		}
		return
	}
	testutil.RequireRoot(t)
	testutil.RunAsNobody(t, "OVL_TEST_ROOT="+makeRoot(t))
}

// TestSnapshotOfWritableRootOnOverlay: a container root kept on an
// overlay mount (a CI container's root), run writable with a snapshot
// volume: the snapshot would stack kernel overlay three deep, which the
// kernel refuses, so its contents are copied, and the run works as
// anywhere else, leaving the root unchanged.
func TestSnapshotOfWritableRootOnOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(makeRoot(t), lower); err != nil {
		t.Fatal(err)
	}
	testutil.CleanupMount(t, merged)
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatal(err)
	}
	before := testutil.TreeHash(t, merged)
	for _, d := range []selector.Decision{decisionFor(t, backend.Native), decisionFor(t, backend.FUSE)} {
		cfg := runner.Config{Layers: []string{merged}, Writable: true, Decision: d,
			Volumes: []runner.Volume{{Path: "/etc/sub", Kind: runner.Snapshot, UID: -1, GID: -1}}}
		out := mustRun(t, cfg, "sh", "-c", "cat /etc/sub/deeper/file; echo new > /etc/sub/new; echo w > /etc/w; cat /etc/sub/new")
		if out != "deep\nnew\n" {
			t.Errorf("%s: the run printed %q", d.Backend, out)
		}
	}
	if testutil.TreeHash(t, merged) != before {
		t.Errorf("the runs changed the root")
	}
}
