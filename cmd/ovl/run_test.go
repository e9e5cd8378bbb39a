package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/runner"
)

func TestRunParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    runner.Volume
		wantErr string
	}{
		{in: "/etc=snapshot", want: runner.Volume{Path: "/etc", Kind: "snapshot", UID: -1, GID: -1}},
		{in: "/etc=snapshot,size=1M,owner=1000:100,from=/srv/etc",
			want: runner.Volume{Path: "/etc", Kind: "snapshot", Size: 1 << 20, UID: 1000, GID: 100, From: "/srv/etc"}},
		{in: "/data=bind:/srv/data,ro", want: runner.Volume{Path: "/data", Kind: "bind", HostDir: "/srv/data", ReadOnly: true, UID: -1, GID: -1}},
		{in: "/tmp=tmpfs,size=512k", want: runner.Volume{Path: "/tmp", Kind: "tmpfs", Size: 512 << 10, UID: -1, GID: -1}},
		{in: "/etc", wantErr: "want PATH=snapshot"},
		{in: "/etc=nfs", wantErr: `unknown volume kind "nfs"`},
		{in: "/etc=snapshot,size=lots", wantErr: `size "lots"`},
		{in: "/etc=snapshot,size=-1M", wantErr: `size "-1M"`},
		{in: "/etc=snapshot,owner=root", wantErr: `owner "root"`},
		{in: "/etc=bind", wantErr: "bind needs a host directory"},
		{in: "/etc=bind:/x,size=1M", wantErr: `"size=1M" does not apply to a bind volume`},
		{in: "/etc=tmpfs,from=/x", wantErr: `"from=/x" does not apply to a tmpfs volume`},
	}
	for _, tt := range tests {
		got, err := runParseVolume(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.in) {
				t.Errorf("runParseVolume(%q) error = %v, want one naming the value and containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("runParseVolume(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRunParseSize(t *testing.T) {
	for in, want := range map[string]int64{"100M": 100 << 20, "100Mi": 100 << 20, "1G": 1 << 30, "4096": 4096, "8k": 8 << 10, "2MB": 2 << 20} {
		if got, err := runParseSize(in); err != nil || got != want {
			t.Errorf("runParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "1X", "0", "1.5G", "99999999999999G"} {
		if _, err := runParseSize(in); err == nil {
			t.Errorf("runParseSize(%q) accepted a bad size", in)
		}
	}
}

// runBusyboxRoot makes a tiny container root from busybox-static.
func runBusyboxRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(testutil.SharedDir(t), "root")
	testutil.BusyboxRoot(t, root)
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("box\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestRunExitStatus checks the exit statuses `ovl run --help` documents,
// on every backend.
func TestRunExitStatus(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	root := runBusyboxRoot(t)
	before := testutil.TreeHash(t, root)
	for _, backend := range []string{"native", "fuse", "copy"} {
		t.Run(backend, func(t *testing.T) {
			tdir := filepath.Join(testutil.SharedDir(t), "transient")
			base := []string{"run", "--backend", backend, "--transient-dir", tdir}
			tests := []struct {
				name    string
				args    []string
				code    int
				stderr  string
				stdout  string
				changed bool
			}{
				{"exit 7", []string{"--writable", root, "--", "sh", "-c", "echo x > /etc/hostname; exit 7"}, 7, "", "", false},
				{"SIGTERM", []string{root, "--", "sh", "-c", "kill -TERM $$"}, 143, "", "", false},
				{"output", []string{"--writable", "--env", "GREETING=hi", root, "sh", "-c", "rm /etc/hostname; echo $GREETING"}, 0, "", "hi\n", false},
				{"not found", []string{root, "--", "no-such-cmd"}, 127, "command not found in the container", "", false},
				{"not executable", []string{root, "--", "/etc/hostname"}, 126, "not executable", "", false},
				{"missing root", []string{root + "/nope", "--", "true"}, 125, "not an existing directory", "", false},
				{"root is a file", []string{root + "/etc/hostname", "--", "true"}, 125, "not an existing directory", "", false},
				{"bad size", []string{"--volume", "/etc=snapshot,size=big", root, "--", "true"}, 125, `size "big"`, "", false},
				{"unknown kind", []string{"--volume", "/etc=nfs", root, "--", "true"}, 125, `unknown volume kind "nfs"`, "", false},
				{"volume outside root", []string{"--volume", "/../etc=snapshot", root, "--", "true"}, 125, "leaves the container root", "", false},
			}
			for _, tt := range tests {
				out, errOut, code := checkOVL(t, bin, nil, append(base, tt.args...)...)
				if code != tt.code || !strings.Contains(errOut, tt.stderr) || (tt.stdout != "" && out != tt.stdout) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d, stderr containing %q", tt.name, code, out, errOut, tt.code, tt.stderr)
				}
				if left, _ := os.ReadDir(tdir); len(left) != 0 {
					t.Errorf("%s: transient directory left behind", tt.name)
				}
			}
			if testutil.TreeHash(t, root) != before {
				t.Errorf("runs changed ROOT")
			}
		})
	}
}

// TestRunKilledThenClean kills `ovl run` (copy backend: it leaves a full
// copy behind) and checks that `ovl clean --transient` removes it.
func TestRunKilledThenClean(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	root := runBusyboxRoot(t)
	tdir := filepath.Join(testutil.SharedDir(t), "transient")
	cmd := exec.Command(bin, "run", "--backend", "copy", "--writable", "--transient-dir", tdir, root, "--", "sh", "-c", "echo ready; exec sleep 1000")
	testutil.StartReady(t, cmd)
	runs, _ := os.ReadDir(tdir)
	if len(runs) != 1 {
		t.Fatalf("want one transient directory while running, have %d", len(runs))
	}
	pid, _ := runner.TransientPID(runs[0].Name())
	if _, code := runOVLCode(t, bin, "clean", "--transient", "--transient-dir", tdir); code != 0 {
		t.Fatalf("ovl clean --transient failed while a run was live")
	}
	if left, _ := os.ReadDir(tdir); len(left) != 1 {
		t.Fatalf("ovl clean --transient removed a live run's directory")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for syscall.Kill(pid, 0) == nil { // init follows its parent (pdeathsig)
		syscall.Nanosleep(&syscall.Timespec{Nsec: 20e6}, nil)
	}
	out, code := runOVLCode(t, bin, "clean", "--transient", "-n", "--transient-dir", tdir)
	if code != 0 || !strings.Contains(out, "would remove "+filepath.Join(tdir, runs[0].Name())) {
		t.Errorf("ovl clean --transient -n: exit %d, %q", code, out)
	}
	if left, _ := os.ReadDir(tdir); len(left) != 1 {
		t.Fatalf("ovl clean -n removed something")
	}
	if out, code := runOVLCode(t, bin, "clean", "--transient", "--transient-dir", tdir); code != 0 || !strings.Contains(out, "removed ") {
		t.Errorf("ovl clean --transient: exit %d, %q", code, out)
	}
	if left, _ := os.ReadDir(tdir); len(left) != 0 {
		t.Errorf("after ovl clean --transient, %d transient directories remain", len(left))
	}
}

func runOVLCode(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, errOut, code := checkOVL(t, bin, nil, args...)
	if code != 0 {
		t.Logf("ovl %v: %s", args, errOut)
	}
	return out, code
}

// TestRunAsOtherUser runs a command as uid 65534 inside a writable run
// on every backend: the container's files must serve it by their
// permissions (the FUSE mount admits other users: allow_other).
func TestRunAsOtherUser(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	root := filepath.Join(testutil.SharedDir(t), "root")
	testutil.BusyboxRoot(t, root)
	if err := os.Symlink("busybox", filepath.Join(root, "bin/su")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("hello from the container\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"native", "fuse", "copy"} {
		t.Run(backend, func(t *testing.T) {
			tdir := filepath.Join(testutil.SharedDir(t), "transient")
			out, errOut, code := checkOVL(t, bin, nil, "run", "--backend", backend, "--transient-dir", tdir, "--writable", root,
				"--", "su", "-s", "/bin/sh", "nobody", "-c", "cat /etc/motd")
			if code != 0 || out != "hello from the container\n" {
				t.Errorf("su nobody -c 'cat /etc/motd': exit %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
}
