package runner_test

import (
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

func modep(m uint32) *uint32 { return &m }

// TestTmpfsAndEmptyVolumes: vagga's !Tmpfs gets its mode (0o1777 by
// default: every user can write), its subdirectories with their modes
// and its files; !Empty is an empty read-only directory (volumes.rst).
func TestTmpfsAndEmptyVolumes(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		cfg := runner.Config{Layers: []string{root}, Decision: d, Volumes: []runner.Volume{
			{Path: "/var/lib", Kind: runner.Tmpfs, UID: 0, GID: 0, Mode: modep(0o1777),
				Subdirs: []runner.TmpfsDir{{Path: "lib", Mode: 0o755}, {Path: "lib/tmp", Mode: 0o1777}, {Path: "lib/pg", Mode: 0o700}},
				Files:   []runner.TmpfsFile{{Path: "lib/docker.sock", Content: ""}, {Path: "motd", Content: "hi"}}},
			{Path: "/etc/sub", Kind: runner.Empty},
		}}
		out := mustRun(t, cfg, "sh", "-c", `stat -c '%a %n' /var/lib /var/lib/lib /var/lib/lib/tmp /var/lib/lib/pg /var/lib/lib/docker.sock /var/lib/motd
cat /var/lib/motd; echo; ls -A /etc/sub | wc -l; touch /etc/sub/x 2>/dev/null || echo empty-ro`)
		want := "1777 /var/lib\n755 /var/lib/lib\n1777 /var/lib/lib/tmp\n700 /var/lib/lib/pg\n644 /var/lib/lib/docker.sock\n644 /var/lib/motd\nhi\n0\nempty-ro\n"
		if out != want {
			t.Errorf("got\n%s\nwant\n%s", out, want)
		}
	})
}

// TestUserIDs: user-id, group-id and supplementary-gids (commands.rst)
// run the command as that user; with external-user-id the command is
// user-id to itself while what it writes belongs to external-user-id of
// the container (here root: the host's root).
func TestUserIDs(t *testing.T) {
	testutil.RequireRoot(t)
	d := decisionFor(t, backend.Native)
	root := makeRoot(t)
	work := testutil.SharedDir(t)
	cfg := runner.Config{Layers: []string{root}, Decision: d, BindWork: work, Workdir: "/work",
		User: &runner.User{UID: 1, GID: 2, Groups: []int{3, 4}, ExternalUID: -1}}
	if out := mustRun(t, cfg, "sh", "-c", "id -u; id -g; id -G"); out != "1\n2\n2 3 4\n" {
		t.Errorf("user-id 1, group-id 2, supplementary-gids [3, 4]: %q", out)
	}
	cfg.User = &runner.User{UID: 1, GID: 0, ExternalUID: 0}
	if out := mustRun(t, cfg, "sh", "-c", "id -u; touch /work/made"); out != "1\n" {
		t.Errorf("external-user-id: id -u = %q, want 1", out)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(work, "made"), &st); err != nil || st.Uid != 0 {
		t.Errorf("a file the command made in /work: uid %d (%v), want 0 (external-user-id)", st.Uid, err)
	}
	// Signals and exit statuses pass through the namespace in between.
	_, _, res, err := run(t, cfg, "sh", "-c", "exit 7")
	if err != nil || res.ExitCode != 7 {
		t.Errorf("exit 7 as an external user: %d, %v", res.ExitCode, err)
	}
}

// TestEnvironFileAndHostFiles: environ-file is read from the container
// under the environment the command is given (container_params.rst);
// the host's resolv.conf and hosts are shown read-only where
// resolv-conf-path and hosts-file-path say.
func TestEnvironFileAndHostFiles(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		if err := os.WriteFile(filepath.Join(root, "etc/environment"), []byte("A=file\nB=\"quoted\"\nC=file\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/resolv.conf"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		host := filepath.Join(testutil.SharedDir(t), "resolv.conf")
		if err := os.WriteFile(host, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := runner.Config{Layers: []string{root}, Decision: d, EnvironFile: "/etc/environment", Env: []string{"C=environ"},
			HostFiles: []runner.HostFile{{Src: host, Dst: "/etc/resolv.conf"}, {Src: host, Dst: "/etc/missing.conf"}}}
		out := mustRun(t, cfg, "sh", "-c", `echo $A $B $C; cat /etc/resolv.conf; echo x >> /etc/resolv.conf 2>/dev/null || echo ro; test -e /etc/missing.conf || echo skipped`)
		if want := "file quoted environ\nnameserver 192.0.2.1\nro\nskipped\n"; out != want {
			t.Errorf("got %q, want %q", out, want)
		}
		cfg.EnvironFile = "/etc/nope"
		if _, _, _, err := run(t, cfg, "true"); err == nil || !strings.Contains(err.Error(), "environment file /etc/nope") {
			t.Errorf("a missing environ-file: %v", err)
		}
	})
}

// TestIsolateNetwork: vagga's isolate-network gives the command a
// network namespace with only lo, up.
func TestIsolateNetwork(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		cfg := runner.Config{Layers: []string{root}, Decision: d, IsolateNetwork: true}
		// /proc/net is the reader's namespace's (/sys shows the host's).
		out := mustRun(t, cfg, "sh", "-c", `grep -c : /proc/net/dev; grep -c "lo:" /proc/net/dev; grep -c " lo$" /proc/net/if_inet6`)
		// Up, lo has ::1 (the kernel gives it when lo comes up).
		if out != "1\n1\n1\n" {
			t.Errorf("isolated network: %q, want one device, lo, up with ::1", out)
		}
	})
}
