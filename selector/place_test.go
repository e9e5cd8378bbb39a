package selector

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// withCandidates points place at state (not given by the user) and the
// tmpfs parents for the rest of t.
func withCandidates(t *testing.T, state string, tmpfs ...string) {
	oldState, oldGiven, oldTmpfs := stateDir, stateDirGiven, tmpfsParents
	stateDir = func() (string, error) { return state, os.MkdirAll(state, 0o700) }
	stateDirGiven = func() bool { return false }
	tmpfsParents = func() []string { return tmpfs }
	t.Cleanup(func() { stateDir, stateDirGiven, tmpfsParents = oldState, oldGiven, oldTmpfs })
}

// TestPlaceOnContainerRoot: with ovl's state directory on an overlay
// mount, as on a container's root, kernel overlay refuses uppers there;
// the selector moves its layer dir to a tmpfs and picks kernel overlay,
// saying why, and leaves nothing behind in either place. As root, and as
// root without CAP_SYS_ADMIN (a default container's root).
func TestPlaceOnContainerRoot(t *testing.T) {
	if testutil.InRootWithoutChild() {
		placeOnOverlay(t, os.Getenv("OVL_TEST_STATE"), os.Getenv("OVL_TEST_TMPFS"))
		return
	}
	testutil.RequireRoot(t)
	base := t.TempDir()
	var dirs []string
	for _, d := range []string{"l", "u", "w", "m", "tmpfs"} {
		p := filepath.Join(base, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, p)
	}
	m, tmpfs := dirs[3], dirs[4]
	testutil.CleanupMount(t, m)
	if err := unix.Mount("overlay", m, "overlay", 0, "lowerdir="+dirs[0]+",upperdir="+dirs[1]+",workdir="+dirs[2]); err != nil {
		t.Fatal(err)
	}
	testutil.CleanupMount(t, tmpfs)
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "mode=1777"); err != nil {
		t.Fatal(err)
	}
	t.Run("root", func(t *testing.T) { placeOnOverlay(t, filepath.Join(m, "root"), tmpfs) })
	t.Run("root without CAP_SYS_ADMIN", func(t *testing.T) {
		testutil.RunAsRootWithout(t, []string{"sys_admin"}, "OVL_TEST_STATE="+filepath.Join(m, "nocap"), "OVL_TEST_TMPFS="+tmpfs)
	})
}

func placeOnOverlay(t *testing.T, state, tmpfs string) {
	withCandidates(t, state, tmpfs)
	ctx := context.Background()
	o := Options{Backend: "auto", CacheDir: t.TempDir()}
	r, d, err := Inspect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if d.Backend != backend.Native || r.LayerFS != "tmpfs" || !strings.HasPrefix(d.LayerDir, tmpfs+"/") {
		t.Errorf("chose %s in %s (%s), want native in a directory of %s (reasons %q)", d.Backend, d.LayerDir, r.LayerFS, tmpfs, d.Reasons)
	}
	if !strings.Contains(d.LayerDirWhy, state+" is on overlay") {
		t.Errorf("LayerDirWhy = %q, want it to say %s is on overlay", d.LayerDirWhy, state)
	}
	if left, _ := os.ReadDir(state); len(left) > 0 {
		t.Errorf("the probe left %d entries in %s", len(left), state)
	}
	if left, _ := os.ReadDir(d.LayerDir); len(left) > 0 {
		t.Errorf("the probe left %d entries in %s", len(left), d.LayerDir)
	}

	// Given, the directory on overlay is probed alone, and the hint
	// says how to move it.
	o.LayerDir = state
	_, d, err = Inspect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if d.Backend == backend.Native || d.LayerDir != state || d.LayerDirWhy != "given" {
		t.Errorf("with --layer-dir %s: %s in %s (%s), want another backend there", state, d.Backend, d.LayerDir, d.LayerDirWhy)
	}
	if !someContains(d.Hints, "--layer-dir") {
		t.Errorf("with --layer-dir on overlay, hints %q do not say how to move it", d.Hints)
	}
}

// TestPlaceStaysWhereMovingCannotHelp: on a filesystem that takes
// overlay uppers, a failing probe is not the directory's fault, so no
// other is probed; a tmpfs directory probed but not chosen is removed;
// `ovl mount` (HostMount) probes only the state directory.
func TestPlaceStaysWhereMovingCannotHelp(t *testing.T) {
	testutil.RequireRoot(t)
	state, tmpfs := filepath.Join(t.TempDir(), "state"), t.TempDir()
	testutil.CleanupMount(t, tmpfs)
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "mode=1777"); err != nil {
		t.Fatal(err)
	}
	var probed []string
	prober := func(fs string, failing ...string) ProbeFunc {
		return func(ctx context.Context, dir string) (*Report, error) {
			probed = append(probed, dir)
			r := fakeReport(1000, "6.18.0", failing...)
			r.LayerDir, r.LayerFS = dir, fs
			return r, nil
		}
	}
	noUserns := append([]string{ProbeUserns}, namespaceProbeNames()...)
	tests := []struct {
		name    string
		fs      string
		host    bool
		want    string
		probes  int
		failing []string
	}{
		{"ext4, no user namespaces: stay", "ext4", false, backend.Copy, 1, noUserns},
		{"ext4, native works: stay", "ext4", false, backend.Native, 1, nil},
		{"overlay, nothing better elsewhere: stay, having looked", "overlay", false, backend.Copy, 2, noUserns},
		{"overlay, ovl mount: stay (FUSE through fusermount3 needs no user namespace)", "overlay", true, backend.FUSE, 1, noUserns},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withCandidates(t, state, tmpfs)
			// Every candidate's report says tt.fs: fine for what is
			// tested, which is whether place moves on.
			probed = nil
			_, d, err := Inspect(context.Background(), Options{Backend: "auto", NoCache: true, HostMount: tt.host, Prober: prober(tt.fs, tt.failing...)})
			if err != nil {
				t.Fatal(err)
			}
			if d.Backend != tt.want || len(probed) != tt.probes || d.LayerDir != state {
				t.Errorf("chose %s in %s after probing %q; want %s in %s after %d probes", d.Backend, d.LayerDir, probed, tt.want, state, tt.probes)
			}
			if left, _ := os.ReadDir(tmpfs); len(left) > 0 && !slices.Contains(probed, d.LayerDir) {
				t.Errorf("a tmpfs directory not chosen was left: %v", left)
			}
		})
	}
}
