package builder

import (
	"archive/tar"
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/selector"
)

// testAsRootAndMappedNobody runs f as root, and again as uid 65534 with
// a range of subordinate ids (testutil.RunAsNobodyWithSubIDs).
func testAsRootAndMappedNobody(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	if testutil.InNobodyChild() {
		t.Run("nobody-subids", func(t *testing.T) {
			if _, err := idmap.Lookup(); err != nil {
				t.Fatalf("the child has no subordinate ids: %v", err)
			}
			f(t)
		})
		return
	}
	t.Run("root", func(t *testing.T) {
		testutil.RequireRoot(t)
		f(t)
	})
	t.Run("nobody-subids", func(t *testing.T) {
		repo, _ := filepath.Abs("..")
		testutil.RunAsNobodyWithSubIDs(t, envRepo+"="+repo)
	})
}

// hostOwner is the owner on disk of a file a container owns as uid:gid:
// the same for root, a subordinate id for a mapped ordinary user.
func hostOwner(uid, gid uint32) (uint32, uint32) {
	if os.Geteuid() == 0 {
		return uid, gid
	}
	return testutil.SubIDStart + uid - 1, testutil.SubIDStart + gid - 1
}

const ownershipYAML = `
containers:
  pg:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh |
        mkdir -p /var/lib/pg/sub
        echo data > /var/lib/pg/sub/file
        chown -R 100:101 /var/lib/pg
        chmod 700 /var/lib/pg
        cp /bin/busybox /bin/suid
        chown 100:101 /bin/suid
        chmod 6755 /bin/suid
    - !Text {/etc/after: "over a private directory"}
    - !Copy {source: /work/src, path: /var/lib/pg/sub/copied, owner-uid: 100, owner-gid: 101}
  child:
    setup:
    - !Container pg
    - !Sh "echo child > /var/lib/pg/sub/child && chown 102:103 /var/lib/pg/sub/child"
commands:
  ls: !Command
    container: pg
    run: "ls -ln /var/lib/pg/sub; ls -lnd /var/lib/pg /bin/suid"
  ls-writable: !Command
    container: pg
    write-mode: transient-hard-link-copy
    run: "ls -ln /var/lib/pg/sub; ls -lnd /var/lib/pg /bin/suid"
  child: !Command
    container: child
    run: "ls -ln /var/lib/pg/sub/child"
`

// lsFields keeps of `ls -ln` lines the mode, owner and group, and name.
func lsFields(out string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || f[0] == "total" {
			continue
		}
		lines = append(lines, strings.Join([]string{f[0], f[2], f[3], f[len(f)-1]}, " "))
	}
	return strings.Join(lines, "\n")
}

// TestStepOwnershipSurvives: owners, mode 0700 and set-id bits that a
// step sets are in the layer, the flattened root, a !Container child's
// root and what later runs show, the same on every backend, as root and
// as an ordinary user with subordinate ids; and `ovl clean --everything`
// removes what such a build wrote.
func TestStepOwnershipSurvives(t *testing.T) {
	testAsRootAndMappedNobody(t, func(t *testing.T) {
		want := strings.Join([]string{
			"-rw-rw-r-- 100 101 copied", // !Copy's default umask is vagga's 0o002
			"-rw-r--r-- 100 101 file",
			"-rwsr-sr-x 100 101 /bin/suid",
			"drwx------ 100 101 /var/lib/pg",
		}, "\n")
		seen := map[string]string{}
		eachBackend(t, func(t *testing.T, b selector.Decision) {
			dir := project(t, ownershipYAML, map[string]string{"src": "copied\n"})
			testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
			var out bytes.Buffer
			r, rec := buildOn(t, dir, "child", b, &out)
			if d := rootDetail(rec, "child"); !strings.HasPrefix(d, "cloned pg's root") {
				t.Errorf("the child's root was not cloned from pg's: %q", d)
			}
			pg, _ := mustBuild(t, dir, "pg", runOpts(b, dir, &out))
			// On disk, as far as the test may look: an ordinary user
			// cannot enter the directory that now belongs to 100.
			for _, root := range []string{pg.Root, r.Root} {
				for _, f := range []struct {
					rel      string
					uid, gid uint32
					mode     uint32
				}{{"var/lib/pg", 100, 101, 0o40700}, {"var/lib/pg/sub/file", 100, 101, 0o100644},
					{"var/lib/pg/sub/copied", 100, 101, 0o100664}, {"bin/suid", 100, 101, 0o106755}} {
					if os.Geteuid() != 0 && strings.HasPrefix(f.rel, "var/lib/pg/") {
						continue
					}
					st := statT(t, filepath.Join(root, f.rel))
					if u, g := hostOwner(f.uid, f.gid); st.Uid != u || st.Gid != g || st.Mode != f.mode {
						t.Errorf("%s on disk: %d:%d mode %o, want %d:%d mode %o", filepath.Join(root, f.rel), st.Uid, st.Gid, st.Mode, u, g, f.mode)
					}
				}
			}
			if os.Geteuid() == 0 {
				st := statT(t, filepath.Join(r.Root, "var/lib/pg/sub/child"))
				if st.Uid != 102 || st.Gid != 103 {
					t.Errorf("the child's file on disk: %d:%d, want 102:103", st.Uid, st.Gid)
				}
			}
			for _, cmd := range []string{"ls", "ls-writable"} {
				got := lsFields(execCommand(t, dir, cmd, b))
				if got != want {
					t.Errorf("%s inside the container:\n%s\nwant\n%s", cmd, got, want)
				}
				seen[b.Backend] = got
			}
			if got := lsFields(execCommand(t, dir, "child", b)); got != "-rw-r--r-- 102 103 /var/lib/pg/sub/child" {
				t.Errorf("child inside the container: %q", got)
			}
			if _, err := NewStore(dir).CleanEverything(false); err != nil {
				t.Errorf("clean --everything: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(dir, ".vagga")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf(".vagga after clean --everything: %v", err)
			}
		})
		t.Logf("ls -ln inside the container, every backend:\n%s", want)
	})
}

// TestOwnershipWithoutSubIDs: an ordinary user without subordinate ids
// gets the single-id map with a one-line warning; a command step that
// chowns to an id that is not mapped fails, naming the step and the
// missing /etc/subuid entry; owners file steps set (a !Copy's owner-uid,
// a tarball's) are lost, not fatal, as before.
func TestOwnershipWithoutSubIDs(t *testing.T) {
	if !testutil.InNobodyChild() {
		repo, _ := filepath.Abs("..")
		testutil.RunAsNobody(t, envRepo+"="+repo)
		return
	}
	if _, err := idmap.Lookup(); !errors.Is(err, idmap.ErrNoSubordinate) {
		t.Skipf("uid 65534 has subordinate ids on this machine: %v", err)
	}
	var log bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&log, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	dir := project(t, `
containers:
  chown:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh "mkdir -p /var/lib/pg && chown 100:101 /var/lib/pg"
  copy:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Copy {source: /work/src, path: /src, owner-uid: 100, owner-gid: 101}
  tar:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Tar {url: ./owned.tar, path: /opt}
`, map[string]string{"src": "x"})
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	writeTar(t, filepath.Join(dir, "owned.tar"), []tarEntry{{name: "f", kind: tar.TypeReg, body: "owned", uid: 100, gid: 101}})
	for _, b := range backends(t) {
		var out bytes.Buffer
		_, _, err := buildOnce(t, dir, "chown", runOpts(b, dir, &out))
		if err == nil || !strings.Contains(err.Error(), `step 2/2 !Sh "mkdir -p /var/lib/pg && chown 100:101`) ||
			!strings.Contains(err.Error(), "no range for nobody in /etc/subuid and /etc/subgid") {
			t.Errorf("%s: chown to an unmapped id: %v\n%s", b.Backend, err, out.String())
		}
	}
	for name, file := range map[string]string{"copy": "src", "tar": "opt/f"} {
		r, _, err := buildOnce(t, dir, name, Options{})
		if err != nil {
			t.Fatalf("%s of files owned by 100:101: %v", name, err)
		}
		if st := statT(t, filepath.Join(r.Root, file)); st.Uid != testutil.NobodyUID || st.Gid != testutil.NobodyGID {
			t.Errorf("%s without subordinate ids: owner %d:%d, want the builder's own", name, st.Uid, st.Gid)
		}
	}
	if n := strings.Count(log.String(), "level=WARN"); n != 1 || !strings.Contains(log.String(), "ownership changes in them will be lost") {
		t.Errorf("want one warning that ownership changes are lost, the log has %d:\n%s", n, log.String())
	}
}
