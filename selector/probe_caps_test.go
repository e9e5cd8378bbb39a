package selector

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestProbeAsRootWithoutCapSysAdmin probes as root without
// CAP_SYS_ADMIN, as in a default Docker or podman container: root is an
// ordinary user there, so the mount probes run in a user namespace
// (userxattr) and kernel overlay is chosen, with no probe tried in place,
// no warning logged and no scratch dir left behind.
func TestProbeAsRootWithoutCapSysAdmin(t *testing.T) {
	if !testutil.InRootWithoutChild() {
		testutil.RunAsRootWithout(t, []string{"sys_admin"})
		return
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err == nil {
		unix.Unmount(dir, 0)
		t.Fatal("a mount in place worked: CAP_SYS_ADMIN was not dropped")
	}
	var logged bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn})))
	defer slog.SetDefault(old)

	r, err := Probe(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Probes {
		t.Logf("%-14s %-8s %s", p.Name, p.Mode, p)
	}
	if r.CanMount || r.Privileged() {
		t.Errorf("report: CanMount %v, Privileged %v; want neither", r.CanMount, r.Privileged())
	}
	if m := r.Modes(); len(m) != 1 || m[0] != ModeUserns {
		t.Errorf("modes probed: %v, want only %s", m, ModeUserns)
	}
	for _, name := range []string{ProbeUserns, ProbeNative, ProbeWhiteout, ProbeOpaque, ProbeFuseBackend} {
		if p := r.Get(name); !p.OK {
			t.Errorf("probe %s: %s; want yes", name, p)
		}
	}
	if logged.Len() > 0 {
		t.Errorf("the probe logged warnings:\n%s", logged.String())
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("the probe left %d entries in the layer dir", len(left))
	}
	d, err := Choose(r, Request{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Backend != backend.Native || d.Isolation != IsolateUserns || d.Namespace != layer.User {
		t.Errorf("decision %s, %s, %s xattrs; want native in a user namespace with user xattrs", d.Backend, d.Isolation, d.Namespace)
	}
	if !strings.Contains(strings.Join(d.Reasons, "; "), "root without CAP_SYS_ADMIN") {
		t.Errorf("reasons %q do not say root lacks CAP_SYS_ADMIN", d.Reasons)
	}
}
