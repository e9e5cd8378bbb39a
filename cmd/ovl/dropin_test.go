package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

func TestDropinArgs(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{[]string{"-o", "lowerdir=/a,upperdir=/u,workdir=/w", "/mnt"}, true},
		{[]string{"-olowerdir=/a", "/mnt"}, true},
		{[]string{"overlay", "/mnt", "-o", "lowerdir=/a"}, true},
		{[]string{"mount", "--backend", "fuse", "/mnt"}, false},
		{[]string{"mount", "/mnt", "-o", "lowerdir=/a"}, false},
		{[]string{"check"}, false},
		{[]string{"--debug", "mount", "-o"}, false},
		{[]string{"--debug", "-o", "lowerdir=/a", "/mnt"}, true},
		{[]string{"--debug", "overlay", "/mnt", "-o", "lowerdir=/a"}, true},
		{[]string{"--debug", "--debug", "-olowerdir=/a", "/mnt"}, true},
		{[]string{"--debug"}, false},
		{nil, false},
	}
	for _, c := range cases {
		if got := dropinArgs(c.args); got != c.want {
			t.Errorf("dropinArgs(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// TestDropinAfterGlobalFlags runs the drop-in mode with ovl's --debug
// before it, as `ovl --debug -o lowerdir=... M`: it mounts (it said
// `unknown command "M"`), and logs ovl's diagnostics.
func TestDropinAfterGlobalFlags(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	d := mountDirs(t, t.TempDir(), "l0", "l1", "m")
	mountTree(t, d[0], map[string]string{"top": "0"})
	mountTree(t, d[1], map[string]string{"bottom": "1"})
	testutil.CleanupMount(t, d[2])
	_, errOut, code := checkOVL(t, bin, nil, "--debug", "-o", "lowerdir="+d[0]+":"+d[1], d[2])
	if code != 0 {
		t.Fatalf("ovl --debug -o lowerdir=... M: exit %d, %s", code, errOut)
	}
	if got := mountRead(t, filepath.Join(d[2], "bottom")); got != "1" {
		t.Errorf("bottom = %q through the drop-in mount", got)
	}
	if !strings.Contains(errOut, "level=DEBUG") {
		t.Errorf("--debug logged nothing: %q", errOut)
	}
	mountUmountCLI(t, bin, nil, d[2])
}

// TestDropinIDMapping mounts as podman's mount_program does with
// `--uidmap 0:200000:65536`: the lower's owners show through the map,
// and a chown through the mount lands in the upper as the container's id.
func TestDropinIDMapping(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	d := mountDirs(t, t.TempDir(), "l", "u", "w", "m")
	mountTree(t, d[0], map[string]string{"f": "x"})
	if err := os.Chown(filepath.Join(d[0], "f"), 5, 6); err != nil {
		t.Fatal(err)
	}
	testutil.CleanupMount(t, d[3])
	opts := "lowerdir=" + d[0] + ",upperdir=" + d[1] + ",workdir=" + d[2] + ",,uidmapping=:0:200000:65536,gidmapping=0:300000:65536"
	if _, errOut, code := checkOVL(t, bin, nil, "-o", opts, d[3]); code != 0 {
		t.Fatalf("ovl -o %s: exit %d, %s", opts, code, errOut)
	}
	defer mountUmountCLI(t, bin, nil, d[3])
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(d[3], "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 200005 || st.Gid != 300006 {
		t.Errorf("f (5:6 on disk) shows as %d:%d, want 200005:300006", st.Uid, st.Gid)
	}
	if err := os.Chown(filepath.Join(d[3], "f"), 200007, 300008); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(d[1], "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 7 || st.Gid != 8 {
		t.Errorf("chown 200007:300008 through the mount gave the upper copy %d:%d, want 7:8", st.Uid, st.Gid)
	}
}

// TestDropinSlimDaemon mounts with the drop-in command line through ovl
// and through ovl-fuse alone (podman's mount_program): both mounts are
// served by an ovl-fuse daemon, the slim binary beside ovl, and
// ovl-fuse refuses a bad option with status 2, naming it, as ovl does.
func TestDropinSlimDaemon(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	slim := filepath.Join(filepath.Dir(bin), "ovl-fuse")
	if _, err := os.Stat(slim); err != nil {
		t.Fatalf("no ovl-fuse beside %s: %v", bin, err)
	}
	for _, prog := range []string{bin, slim} {
		t.Run(filepath.Base(prog), func(t *testing.T) {
			d := mountDirs(t, t.TempDir(), "l", "u", "w", "m")
			mountTree(t, d[0], map[string]string{"f": "lower"})
			testutil.CleanupMount(t, d[3])
			if _, errOut, code := checkOVL(t, prog, nil, "-o", "lowerdir="+d[0]+",upperdir="+d[1]+",workdir="+d[2], d[3]); code != 0 {
				t.Fatalf("%s -o ...: exit %d, %s", prog, code, errOut)
			}
			defer mountUmountCLI(t, bin, nil, d[3])
			if got := mountRead(t, filepath.Join(d[3], "f")); got != "lower" {
				t.Errorf("f = %q through the mount, want %q", got, "lower")
			}
			if exe := dropinDaemonExe(t, d[3]); exe != slim {
				t.Errorf("the mount's daemon runs %s, want %s", exe, slim)
			}
			_, errOut, code := checkOVL(t, prog, nil, "-o", "lowerdir="+d[0]+",fsync=0", d[3])
			if code != 2 || !strings.Contains(errOut, "fsync=0") {
				t.Errorf("%s -o lowerdir=...,fsync=0: exit %d, %q; want 2 and the option named", prog, code, errOut)
			}
		})
	}
}

// dropinDaemonExe returns the executable of the daemon serving target
// (its command line is "ovl fuse-daemon TARGET").
func dropinDaemonExe(t *testing.T, target string) string {
	t.Helper()
	procs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	want := "ovl\x00fuse-daemon\x00" + target + "\x00"
	for _, p := range procs {
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || string(cmdline) != want {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", p.Name(), "exe"))
		if err != nil {
			t.Fatal(err)
		}
		return exe
	}
	t.Fatalf("no daemon process serves %s", target)
	return ""
}
