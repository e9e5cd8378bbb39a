package runner_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
)

func TestWritableRunLeavesRootUnchanged(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		before := testutil.TreeHash(t, root)
		cfg := runner.Config{Layers: []string{root}, Writable: true, Decision: d}
		script := `set -e
echo new > /etc/new
echo overwritten > /etc/passwd
echo appended >> /etc/group
rm /etc/hostname
rm -r /etc/sub
mkdir -p /var/lib/made/deep && echo y > /var/lib/made/deep/y
rm -rf /var/lib/state
chmod 700 /root
cat /etc/passwd
exit 3`
		out, errOut, res, err := run(t, cfg, "sh", "-c", script)
		if err != nil {
			t.Fatalf("writable run: %v\n%s", err, errOut)
		}
		if res.ExitCode != 3 || out != "overwritten\n" {
			t.Fatalf("writable run: exit %d, output %q, want 3 and the overwritten file\nstderr: %s", res.ExitCode, out, errOut)
		}
		if res.Backend != d.Backend {
			t.Errorf("Result.Backend = %q, want %q", res.Backend, d.Backend)
		}
		if after := testutil.TreeHash(t, root); after != before {
			t.Errorf("the writable run changed ROOT (tree hash %s before, %s after)", before, after)
		}
		out = mustRun(t, cfg, "sh", "-c", "cat /etc/passwd /etc/hostname /etc/sub/deeper/file; ls /etc; ls /var/lib")
		want := "root:x:0:0:root:/root:/bin/sh\nbox\ndeep\ngroup\nhostname\npasswd\nsub\nstate\n"
		if out != want {
			t.Errorf("second run sees %q, want the original %q", out, want)
		}
	})
}

func TestReadOnlyByDefault(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		before := testutil.TreeHash(t, root)
		out, errOut, res, err := run(t, runner.Config{Layers: []string{root}, Decision: d},
			"sh", "-c", "echo x > /etc/new 2>/dev/null && echo wrote; echo tmp > /tmp/t && cat /tmp/t")
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("read-only run: %v, exit %d\n%s", err, res.ExitCode, errOut)
		}
		if out != "tmp\n" {
			t.Errorf("read-only run printed %q: the root should refuse writes, /tmp accept them", out)
		}
		if testutil.TreeHash(t, root) != before {
			t.Errorf("a read-only run changed ROOT")
		}
	})
}

func TestSnapshotVolume(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		before := testutil.TreeHash(t, root)
		plain := runner.Config{Layers: []string{root}, Decision: d}
		statEtc := mustRun(t, plain, "stat", "-c", "%a %u %g", "/etc")
		snap := func(v runner.Volume) runner.Config {
			v.Path, v.Kind = "/etc", runner.Snapshot
			return runner.Config{Layers: []string{root}, Decision: d, Volumes: []runner.Volume{v}}
		}
		cfg := snap(runner.Volume{UID: -1, GID: -1})
		out := mustRun(t, cfg, "sh", "-c", `stat -c "%a %u %g" /etc; cat /etc/hostname; echo w > /etc/w; echo o > /etc/passwd; rm -r /etc/sub; cat /etc/w /etc/passwd; ls /etc`)
		want := statEtc + "box\nw\no\ngroup\nhostname\npasswd\nw\n"
		if out != want {
			t.Errorf("in the snapshot: %q, want %q", out, want)
		}
		out = mustRun(t, cfg, "sh", "-c", "ls /etc; cat /etc/passwd")
		if want := "group\nhostname\npasswd\nsub\nroot:x:0:0:root:/root:/bin/sh\n"; out != want {
			t.Errorf("next run sees %q, want the originals %q", out, want)
		}

		// size=1M: a large write fails with ENOSPC, the rest works.
		cfg = snap(runner.Volume{UID: -1, GID: -1, Size: 1 << 20})
		out, errOut, res, err := run(t, cfg, "sh", "-c",
			"dd if=/dev/zero of=/etc/big bs=1024 count=4096 2>&1; echo dd=$?; echo fine > /tmp/x && cat /tmp/x /etc/hostname")
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("size=1M run: %v, exit %d\n%s", err, res.ExitCode, errOut)
		}
		if !strings.Contains(out, "No space left on device") || !strings.Contains(out, "dd=1") || !strings.HasSuffix(out, "fine\nbox\n") {
			t.Errorf("size=1M: a 4 MB write should fail with ENOSPC and nothing else break; got %q", out)
		}

		// owner= is honoured (as an unprivileged user only its own id,
		// root in the namespace, can be given).
		uid, gid := 1234, 5678
		if testutil.InNobodyChild() {
			uid, gid = 0, 0
		}
		cfg = snap(runner.Volume{UID: uid, GID: gid})
		out = mustRun(t, cfg, "stat", "-c", "%a %u %g", "/etc")
		if want := fmt.Sprintf("%s %d %d\n", strings.Fields(statEtc)[0], uid, gid); out != want {
			t.Errorf("owner=%d:%d: /etc is %q, want %q", uid, gid, out, want)
		}
		if testutil.TreeHash(t, root) != before {
			t.Errorf("snapshot runs changed ROOT")
		}
	})
}

func TestSnapshotFrom(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		from := filepath.Join(testutil.SharedDir(t), "from")
		if err := os.MkdirAll(from, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(from, "other"), []byte("other\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := runner.Config{Layers: []string{root}, Decision: d,
			Volumes: []runner.Volume{{Path: "/var/lib", Kind: runner.Snapshot, From: from, UID: -1, GID: -1}}}
		out := mustRun(t, cfg, "sh", "-c", "ls /var/lib; echo x > /var/lib/x; cat /var/lib/other")
		if out != "other\nother\n" {
			t.Errorf("snapshot from %s shows %q", from, out)
		}
		if _, err := os.Stat(filepath.Join(from, "x")); err == nil {
			t.Errorf("a write to the snapshot reached its source %s", from)
		}
	})
}

func TestConcurrentWritableRuns(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		tdir := filepath.Join(testutil.SharedDir(t), "transient")
		const n = 10
		var wg sync.WaitGroup
		outs := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := runner.Config{Layers: []string{root}, Writable: true, Decision: d, TransientDir: tdir}
				script := fmt.Sprintf("echo %d > /marker.%d; sleep 0.3; ls / | grep marker", i, i)
				var out string
				var res runner.Result
				out, _, res, errs[i] = run(t, cfg, "sh", "-c", script)
				if errs[i] == nil && res.ExitCode != 0 {
					errs[i] = fmt.Errorf("exit %d", res.ExitCode)
				}
				outs[i] = out
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Errorf("run %d: %v", i, errs[i])
			} else if want := fmt.Sprintf("marker.%d\n", i); outs[i] != want {
				t.Errorf("run %d sees markers %q, want only its own %q", i, outs[i], want)
			}
		}
		if left, _ := os.ReadDir(tdir); len(left) != 0 {
			t.Errorf("%d transient directories left after the runs", len(left))
		}
	})
}

func TestExitCodeAndSignal(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		cfg := runner.Config{Layers: []string{root}, Writable: true, Decision: d}
		_, errOut, res, err := run(t, cfg, "sh", "-c", "exit 7")
		if err != nil || res.ExitCode != 7 || res.Signal != 0 {
			t.Errorf("sh -c 'exit 7': %+v, %v, want exit 7\n%s", res, err, errOut)
		}
		_, errOut, res, err = run(t, cfg, "sh", "-c", "kill -TERM $$")
		if err != nil || res.Signal != syscall.SIGTERM || res.ExitCode != 128+15 {
			t.Errorf("a command killed by SIGTERM: %+v, %v, want Signal SIGTERM and exit 143\n%s", res, err, errOut)
		}
	})
}

func TestKilledRunLeavesNoMountAndCleanRemovesIt(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		tdir := filepath.Join(testutil.SharedDir(t), "transient")
		cmd := startSleepingRun(t, helperConfig{Layers: []string{root}, Writable: true, Decision: d, TransientDir: tdir,
			Volumes: []runner.Volume{{Path: "/etc", Kind: runner.Snapshot, UID: -1, GID: -1}}})
		runs, _ := os.ReadDir(tdir)
		if len(runs) != 1 {
			t.Fatalf("want one transient directory while running, have %d", len(runs))
		}
		initPID, ok := runner.TransientPID(runs[0].Name())
		if !ok {
			t.Fatalf("transient directory %s is not NAME.PID", runs[0].Name())
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		// The init process dies with its parent (pdeathsig, lifeline
		// pipe); wait for it, within a bound far above any normal delay.
		for i := 0; unix.Kill(initPID, 0) == nil; i++ {
			if i == 6000 {
				t.Fatalf("the run's init process %d survived its killed parent for 2 minutes", initPID)
			}
			unix.Nanosleep(&unix.Timespec{Nsec: 20e6}, nil)
		}
		noMountsUnder(t, tdir)
		noMountsUnder(t, root)
		removed, err := runner.CleanTransient(tdir, false)
		if err != nil {
			t.Fatalf("CleanTransient: %v", err)
		}
		if len(removed) != 1 {
			t.Errorf("CleanTransient removed %v, want the killed run's directory", removed)
		}
		if left, _ := os.ReadDir(tdir); len(left) != 0 {
			t.Errorf("after CleanTransient %d transient directories remain", len(left))
		}
	})
}

func TestCleanTransientKeepsLiveRuns(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, fmt.Sprintf("box.%d", os.Getpid()))
	other := filepath.Join(dir, "not-a-run")
	for _, d := range []string{live, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := runner.CleanTransient(dir, false)
	if err != nil || len(removed) != 0 {
		t.Fatalf("CleanTransient removed %v (%v); a live pid's directory and a foreign name must stay", removed, err)
	}
}

func TestBadInput(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		file := filepath.Join(root, "etc/passwd")
		tdir := filepath.Join(testutil.SharedDir(t), "transient")
		cases := []struct {
			name    string
			cfg     runner.Config
			args    []string
			wantErr error
			code    int
		}{
			{"missing root", runner.Config{Layers: []string{root + "/nope"}}, []string{"true"}, runner.ErrBadConfig, 125},
			{"root is a file", runner.Config{Layers: []string{file}}, []string{"true"}, runner.ErrBadConfig, 125},
			{"relative volume", runner.Config{Layers: []string{root}, Volumes: []runner.Volume{{Path: "etc", Kind: runner.Snapshot}}}, []string{"true"}, runner.ErrBadConfig, 125},
			{"volume outside root", runner.Config{Layers: []string{root}, Volumes: []runner.Volume{{Path: "/../../etc", Kind: runner.Snapshot}}}, []string{"true"}, runner.ErrBadConfig, 125},
			{"unknown volume kind", runner.Config{Layers: []string{root}, Volumes: []runner.Volume{{Path: "/etc", Kind: "nfs"}}}, []string{"true"}, runner.ErrBadConfig, 125},
			{"command not found", runner.Config{Layers: []string{root}, Writable: true}, []string{"no-such-command"}, runner.ErrCommandNotFound, 127},
			{"not executable", runner.Config{Layers: []string{root}}, []string{"/etc/passwd"}, runner.ErrNotExecutable, 126},
			{"missing workdir", runner.Config{Layers: []string{root}, Workdir: "/nonexistent"}, []string{"true"}, nil, 125},
			{"missing volume path in a read-only root", runner.Config{Layers: []string{root}, Volumes: []runner.Volume{{Path: "/nonexistent", Kind: runner.Tmpfs, UID: -1, GID: -1}}}, []string{"true"}, runner.ErrNotInContainer, 125},
		}
		for _, c := range cases {
			c.cfg.Decision, c.cfg.TransientDir = d, tdir
			_, _, res, err := run(t, c.cfg, c.args...)
			if err == nil || (c.wantErr != nil && !errors.Is(err, c.wantErr)) || res.ExitCode != c.code {
				t.Errorf("%s: got %v (exit %d), want %v (exit %d)", c.name, err, res.ExitCode, c.wantErr, c.code)
			}
			noMountsUnder(t, tdir)
			if left, _ := os.ReadDir(tdir); len(left) != 0 {
				t.Errorf("%s: %d transient directories left behind", c.name, len(left))
			}
		}
	})
}

func TestKeepChanges(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		before := testutil.TreeHash(t, root)
		keep := filepath.Join(testutil.SharedDir(t), "step1")
		cfg := runner.Config{Layers: []string{root}, Writable: true, KeepChanges: keep, Decision: d}
		mustRun(t, cfg, "sh", "-c", "echo new > /etc/new; rm /etc/hostname; echo o > /etc/passwd; rm -r /etc/sub; mkdir /etc/sub; echo s > /etc/sub/s")
		if testutil.TreeHash(t, root) != before {
			t.Errorf("a --keep-changes run changed ROOT")
		}
		if left, _ := os.ReadDir(filepath.Dir(keep)); len(left) != 1 {
			t.Errorf("the work directory of the kept layer was left next to it: %v", left)
		}
		// The kept layer on top of ROOT shows the changes, on this
		// backend and on the kernel's.
		for _, reader := range []selector.Decision{d, decisionFor(t, backend.Native)} {
			out := mustRun(t, runner.Config{Layers: []string{keep, root}, Decision: reader},
				"sh", "-c", "ls /etc; cat /etc/passwd; ls /etc/sub")
			if want := "group\nnew\npasswd\nsub\no\ns\n"; out != want {
				t.Errorf("layer kept by %s, read by %s: %q, want %q", d.Backend, reader.Backend, out, want)
			}
		}
	})
}

// TestDecisionNamespaceCarried runs, as root, with decisions whose
// namespace is user.* (what root inside a user namespace gets): the
// kept layer marks the directory that replaced a file opaque in user.*,
// so init used the decision it was sent rather than what its own process
// state says.
func TestDecisionNamespaceCarried(t *testing.T) {
	testutil.RequireRoot(t)
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			d := decisionFor(t, name)
			if d.Namespace != layer.Trusted {
				t.Fatalf("root's decision has namespace %v, want trusted", d.Namespace)
			}
			d.Namespace = layer.User
			root := makeRoot(t)
			keep := filepath.Join(testutil.SharedDir(t), "step1")
			mustRun(t, runner.Config{Layers: []string{root}, Writable: true, KeepChanges: keep, Decision: d},
				"sh", "-c", "rm /etc/hostname; mkdir /etc/hostname")
			buf := make([]byte, 8)
			n, err := unix.Lgetxattr(filepath.Join(keep, "etc/hostname"), layer.User.Xattr(layer.KeyOpaque), buf)
			if err != nil || string(buf[:n]) != "y" {
				t.Errorf("%s of the directory that replaced a file: %q, %v; want \"y\"", layer.User.Xattr(layer.KeyOpaque), buf[:max(n, 0)], err)
			}
			if _, err := unix.Lgetxattr(filepath.Join(keep, "etc/hostname"), layer.Trusted.Xattr(layer.KeyOpaque), buf); err == nil {
				t.Errorf("the kept layer has %s too", layer.Trusted.Xattr(layer.KeyOpaque))
			}
		})
	}
}

func TestEnvironmentWorkdirAndDevices(t *testing.T) {
	t.Setenv("RUNNER_TEST_SECRET", "do not leak")
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		work := testutil.SharedDir(t)
		if err := os.WriteFile(filepath.Join(work, "project.txt"), []byte("project\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := runner.Config{Layers: []string{root}, Writable: true, Decision: d, BindWork: work, Workdir: "/work",
			Env: []string{"GREETING=hello", "PATH=/bin"}, Stdin: strings.NewReader("from stdin\n")}
		script := `read line; echo $line
echo $GREETING $PATH $HOME; pwd; cat project.txt; echo made > made.txt
echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c
test -d /dev/pts && test -d /dev/shm && test -c /dev/tty && echo devices
test $(ls /proc | grep -c "^[0-9]") -lt 20 && echo pidns; test -e /proc/self/status && echo proc
touch /sys/x 2>/dev/null || echo sys-ro
echo secrets=$(cat /proc/1/environ /proc/self/environ | grep -c RUNNER_TEST_SECRET)`
		out := mustRun(t, cfg, "sh", "-c", script)
		want := "from stdin\nhello /bin /root\n/work\nproject\n4\n4\ndevices\npidns\nproc\nsys-ro\nsecrets=0\n"
		if out != want {
			t.Errorf("in the container: %q, want %q", out, want)
		}
		if b, err := os.ReadFile(filepath.Join(work, "made.txt")); err != nil || string(b) != "made\n" {
			t.Errorf("a write to /work did not reach the bound host directory: %q, %v", b, err)
		}
	})
}

func TestSignalForwarded(t *testing.T) {
	eachBackendAndUser(t, func(t *testing.T, d selector.Decision) {
		root := makeRoot(t)
		cmd := startSleepingRun(t, helperConfig{Layers: []string{root}, Writable: true, Decision: d,
			TransientDir: filepath.Join(testutil.SharedDir(t), "transient")})
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 128+15 {
			t.Errorf("SIGTERM to the caller: the run ended with %d, want 143 (the command killed by the forwarded SIGTERM)", code)
		}
	})
}

// TestSnapshotOfForeignTreeAsNobody: an ordinary user snapshots a
// directory owned by another host user (root here), whose owner its user
// namespace cannot map: the volume works, keeps the mode, and new files
// can be written.
func TestSnapshotOfForeignTreeAsNobody(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			if !testutil.InNobodyChild() {
				testutil.RequireRoot(t)
				root := makeRoot(t)
				// Readable by others: uid 65534 reads it as "other".
				if err := os.Chmod(filepath.Join(root, "etc"), 0o755); err != nil {
					t.Fatal(err)
				}
				testutil.RunAsNobody(t, "OVL_TEST_ROOT="+root)
				return
			}
			cfg := runner.Config{Layers: []string{os.Getenv("OVL_TEST_ROOT")}, Decision: decisionFor(t, name),
				Volumes: []runner.Volume{{Path: "/etc", Kind: runner.Snapshot, UID: -1, GID: -1}}}
			out := mustRun(t, cfg, "sh", "-c", `stat -c %a /etc; echo n > /etc/n && cat /etc/n /etc/hostname`)
			if want := "755\nn\nbox\n"; out != want {
				t.Errorf("snapshot of a root-owned /etc as uid 65534: %q, want %q", out, want)
			}
		})
	}
}
