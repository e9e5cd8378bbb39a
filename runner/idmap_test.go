package runner_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/runner"
)

// TestRunMapsSubordinateIDs: for an ordinary user with subordinate ids a
// run maps them as vagga does, on every backend: 0 is the user, the
// container's other ids (uids/gids, default 0-65535) are the subordinate
// ids in order. A chown in the run is on disk as the subordinate id, a
// run asking for other ids gets them, and one asking for more ids than
// there are fails, saying so.
func TestRunMapsSubordinateIDs(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			if !testutil.InNobodyChild() {
				testutil.RunAsNobodyWithSubIDs(t)
				return
			}
			b := decisionFor(t, name)
			root := makeRoot(t)
			upper := filepath.Join(testutil.SharedDir(t), "upper")
			cfg := runner.Config{Layers: []string{root}, Writable: true, KeepChanges: upper, Decision: b}
			out := mustRun(t, cfg, "sh", "-c", "mkdir /var/lib/pg && busybox chown 100:101 /var/lib/pg && chmod 700 /var/lib/pg && ls -lnd /var/lib/pg")
			if f := strings.Fields(out); len(f) < 4 || f[0] != "drwx------" || f[2] != "100" || f[3] != "101" {
				t.Errorf("inside the run: %q, want drwx------ 100 101", out)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(upper, "var/lib/pg"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != testutil.SubIDStart+99 || st.Gid != testutil.SubIDStart+100 {
				t.Errorf("in the kept upper: owner %d:%d, want the subordinate ids %d:%d", st.Uid, st.Gid, testutil.SubIDStart+99, testutil.SubIDStart+100)
			}

			custom := []idmap.Range{{First: 0, Last: 0}, {First: 1000, Last: 1999}}
			cfg = runner.Config{Layers: []string{root}, Writable: true, Decision: b, UIDs: custom, GIDs: custom}
			out = mustRun(t, cfg, "sh", "-c", "touch /tmp/x && busybox chown 1000:1001 /tmp/x && ls -ln /tmp/x && cat /proc/self/uid_map")
			if !strings.Contains(out, " 1000 ") || !strings.Contains(out, " 1001 ") || strings.Count(out, "\n") != 3 ||
				!strings.Contains(strings.Join(strings.Fields(out), " "), "1000 200000 1000") {
				t.Errorf("uids [0, 1000-1999]: %q; want the file 1000:1001 and 1000-1999 mapped onto %d", out, testutil.SubIDStart)
			}

			cfg.UIDs = []idmap.Range{{First: 0, Last: 70000}}
			if _, _, _, err := run(t, cfg, "true"); !errors.Is(err, idmap.ErrTooFew) || !strings.Contains(err.Error(), "/etc/subuid") {
				t.Errorf("uids 0-70000 with 65536 subordinate ids: %v; want ErrTooFew naming /etc/subuid", err)
			}
		})
	}
}

// TestCleanTransientRemovesMappedFiles: what a killed run left behind in
// its transient directory, owned by the user's subordinate ids and
// private to them, is removed by CleanTransient as root of a namespace
// where those ids are mapped.
func TestCleanTransientRemovesMappedFiles(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobodyWithSubIDs(t)
		return
	}
	tdir := filepath.Join(testutil.SharedDir(t), "transient")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(tdir, fmt.Sprintf("c.%d", dead.Process.Pid))
	cfg := runner.Config{Layers: []string{makeRoot(t)}, Writable: true, KeepChanges: filepath.Join(left, "upper"), Decision: decisionFor(t, backend.Native)}
	mustRun(t, cfg, "sh", "-c", "mkdir -p /var/lib/pg/x && busybox chown -R 100:101 /var/lib/pg && chmod 700 /var/lib/pg")
	if err := os.RemoveAll(left); err == nil {
		t.Fatalf("the user removed %s by itself: the test shows nothing", left)
	}
	removed, err := runner.CleanTransient(tdir, false)
	if err != nil || len(removed) != 1 || removed[0] != left {
		t.Errorf("CleanTransient = %v, %v; want %s removed", removed, err, left)
	}
	if _, err := os.Lstat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", left, err)
	}
}
