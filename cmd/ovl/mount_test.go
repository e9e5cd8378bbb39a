package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

func TestMountSpec(t *testing.T) {
	tests := []struct {
		name    string
		opts    mountOptions
		want    layer.Spec // Lowers, Upper, Work, ReadOnly, Options, Namespace compared
		wantErr string
	}{
		{name: "one --lower is split at ':'", opts: mountOptions{Lowers: []string{"/a:/b:/c"}, Upper: "/u", Work: "/w"},
			want: layer.Spec{Lowers: []string{"/a", "/b", "/c"}, Upper: "/u", Work: "/w"}},
		{name: "escaped ':' in one --lower", opts: mountOptions{Lowers: []string{`/v1\:2:/b`}},
			want: layer.Spec{Lowers: []string{"/v1:2", "/b"}}},
		{name: "repeated --lower: one layer each, ':' and ',' kept", opts: mountOptions{Lowers: []string{"/x:1,2", "/y:3"}},
			want: layer.Spec{Lowers: []string{"/x:1,2", "/y:3"}}},
		{name: "kernel syntax", opts: mountOptions{Kernel: []string{`lowerdir=/a\:1:/b,upperdir=/u\,x,workdir=/w,volatile,index=on,xino=auto,metacopy=off`}},
			want: layer.Spec{Lowers: []string{"/a:1", "/b"}, Upper: "/u,x", Work: "/w", Options: layer.Options{Volatile: true, Index: true, Xino: true}}},
		{name: "lowerdir+ one layer each", opts: mountOptions{Kernel: []string{"lowerdir+=/a:1", "lowerdir+=/b,ro"}},
			want: layer.Spec{Lowers: []string{"/a:1", "/b"}, ReadOnly: true}},
		{name: "flags", opts: mountOptions{Lowers: []string{"/a"}, ReadOnly: true, Features: layer.Options{Volatile: true, Index: true}},
			want: layer.Spec{Lowers: []string{"/a"}, ReadOnly: true, Options: layer.Options{Volatile: true, Index: true}}},
		{name: "metacopy turns redirect_dir on, as in the kernel", opts: mountOptions{Lowers: []string{"/a"}, Features: layer.Options{Metacopy: true}},
			want: layer.Spec{Lowers: []string{"/a"}, Options: layer.Options{RedirectDir: true, Metacopy: true}}},
		{name: "userxattr", opts: mountOptions{Kernel: []string{"lowerdir=/a:/b,userxattr"}},
			want: layer.Spec{Lowers: []string{"/a", "/b"}, Namespace: layer.User}},
		{name: "no lower", opts: mountOptions{Upper: "/u", Work: "/w"}, wantErr: "no lower layer"},
		{name: "empty lower", opts: mountOptions{Lowers: []string{"/a:"}}, wantErr: "ends with an unescaped ':'"},
		{name: "empty repeated lower", opts: mountOptions{Lowers: []string{"/a", ""}}, wantErr: "lower layer 1 is an empty path"},
		{name: "data-only lowers", opts: mountOptions{Lowers: []string{"/a::/b"}}, wantErr: "data-only lower layers"},
		{name: "as the kernel: a second lowerdir replaces the first, ,, is nothing",
			opts: mountOptions{Kernel: []string{`lowerdir=/x,,lowerdir=/a\\b:/c,upperdir=/u`}, Work: "/w"},
			want: layer.Spec{Lowers: []string{`/a\b`, "/c"}, Upper: "/u", Work: "/w"}},
		{name: "ID mappings", opts: mountOptions{Kernel: []string{"lowerdir=/a,uidmapping=0:1000:1"}}, wantErr: "not supported by ovl mount yet"},
		{name: "both --lower and lowerdir", opts: mountOptions{Lowers: []string{"/a"}, Kernel: []string{"lowerdir=/b"}}, wantErr: "give one of them"},
		{name: "known option ovl mount does not apply", opts: mountOptions{Kernel: []string{"lowerdir=/a,nfs_export=on"}}, wantErr: "-o nfs_export=on: ovl mount does not apply this option"},
		{name: "unknown option", opts: mountOptions{Kernel: []string{"lowerdir=/a,nosuch"}}, wantErr: `-o "nosuch": unknown option`},
		{name: "bad on/off", opts: mountOptions{Kernel: []string{"lowerdir=/a,index=maybe"}}, wantErr: "want index=on|off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Target = "/t"
			got, err := mountSpec(&tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Target = "/t"
			if !reflect.DeepEqual(got, want) {
				t.Errorf("spec = %+v\nwant   %+v", got, want)
			}
		})
	}
}

func TestMountRelativePathsBecomeAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	got, err := mountSpec(&mountOptions{Lowers: []string{"a:b"}, Upper: "u", Work: "w", Target: "m"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "m")}
	if g := append(got.Lowers, got.Upper, got.Work, got.Target); !reflect.DeepEqual(g, want) {
		t.Errorf("paths = %q, want %q", g, want)
	}
}

// mountTree makes dir/name/file (holding content) for each entry.
func mountTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mountDirs(t *testing.T, root string, names ...string) []string {
	t.Helper()
	var out []string
	for _, n := range names {
		p := filepath.Join(root, n)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// mountUmountCLI runs `ovl umount m` with env and checks that m is no
// longer mounted.
func mountUmountCLI(t *testing.T, bin string, env []string, m string) {
	t.Helper()
	if _, _, code := checkOVL(t, bin, env, "umount", m); code != 0 {
		t.Fatalf("ovl umount exited %d", code)
	}
	if _, ok := mountIsMounted(t, m); ok {
		t.Fatalf("%s still mounted after ovl umount", m)
	}
}

// mountIsMounted reports whether target is a mount point, and its type.
func mountIsMounted(t *testing.T, target string) (string, bool) {
	t.Helper()
	entries, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := mountinfo.Find(entries, target)
	return e.FSType, ok
}

func mountRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read through the mount: %v", err)
	}
	return string(b)
}

// TestMountCLI mounts with the ovl binary as root (native, the selector's
// choice) and unmounts with ovl umount.
func TestMountCLI(t *testing.T) {
	testutil.RequireRoot(t)
	bin := checkBuildOVL(t)
	base := t.TempDir()
	env := []string{"OVL_RUNTIME_DIR=" + filepath.Join(base, "run"), "OVL_STATE_DIR=" + filepath.Join(base, "state"), "OVL_BACKEND="}

	t.Run("three layers with upper", func(t *testing.T) {
		d := mountDirs(t, t.TempDir(), "l0", "l1", "l2", "u", "w", "m")
		l0, l1, l2, u, w, m := d[0], d[1], d[2], d[3], d[4], d[5]
		mountTree(t, l0, map[string]string{"f": "top", "dir/a": "a"})
		mountTree(t, l1, map[string]string{"f": "middle", "dir/b": "b", "gone": "x"})
		mountTree(t, l2, map[string]string{"f": "bottom", "dir/c": "c", "deep/x": "x"})
		testutil.CleanupMount(t, m)
		out, _, code := checkOVL(t, bin, env, "mount", "--lower", l0+":"+l1+":"+l2, "--upper", u, "--work", w, m)
		if code != 0 {
			t.Fatalf("ovl mount exited %d", code)
		}
		if !strings.Contains(out, "native backend") {
			t.Errorf("ovl mount output %q does not name the native backend", out)
		}
		if typ, ok := mountIsMounted(t, m); !ok || typ != "overlay" {
			t.Fatalf("after ovl mount, %s is mounted=%v type %q; want an overlay", m, ok, typ)
		}
		if got := mountRead(t, filepath.Join(m, "f")); got != "top" {
			t.Errorf("f = %q, want the top layer's", got)
		}
		for _, f := range []string{"dir/a", "dir/b", "dir/c", "deep/x"} {
			mountRead(t, filepath.Join(m, f))
		}
		if err := os.WriteFile(filepath.Join(m, "new"), []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(m, "gone")); err != nil {
			t.Fatal(err)
		}
		mountUmountCLI(t, bin, env, m)
		if got := mountRead(t, filepath.Join(u, "new")); got != "new" {
			t.Errorf("upper/new = %q, want the write", got)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(u, "gone"), &st); err != nil || !layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
			t.Errorf("upper/gone is not a 0/0 whiteout (err %v, mode %o)", err, st.Mode)
		}
	})

	t.Run("drop-in mode reads containers/storage's .wh. whiteouts", func(t *testing.T) {
		// containers/storage hands a mount program layers whose
		// whiteouts are ".wh." files (the AUFS format it assumes there),
		// as fuse-overlayfs reads them; podman commit and build showed
		// deleted files come back as ".wh.NAME" files when ovl did not.
		d := mountDirs(t, t.TempDir(), "l0", "l1", "u", "w", "m")
		mountTree(t, d[0], map[string]string{".wh.gone": "", "opq/.wh..wh..opq": "", "opq/new": "n"})
		mountTree(t, d[1], map[string]string{"gone": "x", "kept": "k", "opq/old": "o"})
		testutil.CleanupMount(t, d[4])
		if _, _, code := checkOVL(t, bin, env, "-o", "lowerdir="+d[0]+":"+d[1]+",upperdir="+d[2]+",workdir="+d[3], d[4]); code != 0 {
			t.Fatalf("ovl -o ... exited %d", code)
		}
		for dir, want := range map[string]string{d[4]: "kept opq", filepath.Join(d[4], "opq"): "new"} {
			if got := strings.Join(testutil.Names(t, dir), " "); got != want {
				t.Errorf("drop-in merged %s = [%s], want [%s] (whiteout and opaque marker read, not shown)", dir, got, want)
			}
		}
		mountUmountCLI(t, bin, env, d[4])
	})

	t.Run("repeated --lower with ':' and ',' in paths, read-only", func(t *testing.T) {
		root := t.TempDir()
		d := mountDirs(t, root, "v1:2024,a", "base:x", "m")
		mountTree(t, d[0], map[string]string{"top": "1"})
		mountTree(t, d[1], map[string]string{"bottom": "2"})
		testutil.CleanupMount(t, d[2])
		if _, _, code := checkOVL(t, bin, env, "mount", "--lower", d[0], "--lower", d[1], "--read-only", d[2]); code != 0 {
			t.Fatalf("ovl mount exited %d", code)
		}
		if mountRead(t, filepath.Join(d[2], "top")) != "1" || mountRead(t, filepath.Join(d[2], "bottom")) != "2" {
			t.Error("merged read-only tree does not show both layers")
		}
		if err := os.WriteFile(filepath.Join(d[2], "x"), nil, 0o644); !errorsIsErrno(err, unix.EROFS) {
			t.Errorf("write to a read-only stack: %v, want EROFS", err)
		}
		if _, _, code := checkOVL(t, bin, env, "umount", d[2]); code != 0 {
			t.Fatalf("ovl umount exited %d", code)
		}
	})

	t.Run("kernel -o syntax with escapes", func(t *testing.T) {
		root := t.TempDir()
		d := mountDirs(t, root, "a:1", "b", "u", "w", "m")
		mountTree(t, d[0], map[string]string{"f": "a"})
		mountTree(t, d[1], map[string]string{"g": "b"})
		testutil.CleanupMount(t, d[4])
		o := "lowerdir=" + strings.ReplaceAll(d[0], ":", `\:`) + ":" + d[1] + ",upperdir=" + d[2] + ",workdir=" + d[3] + ",volatile"
		if _, _, code := checkOVL(t, bin, env, "mount", "-o", o, d[4]); code != 0 {
			t.Fatalf("ovl mount -o exited %d", code)
		}
		if mountRead(t, filepath.Join(d[4], "f")) != "a" || mountRead(t, filepath.Join(d[4], "g")) != "b" {
			t.Error("merged tree does not show both layers")
		}
		if _, _, code := checkOVL(t, bin, env, "umount", d[4]); code != 0 {
			t.Fatalf("ovl umount exited %d", code)
		}
	})

	t.Run("forced fuse backend", func(t *testing.T) {
		d := mountDirs(t, t.TempDir(), "l", "u", "w", "m")
		mountTree(t, d[0], map[string]string{"f": "lower"})
		testutil.CleanupMount(t, d[3])
		mountAndUmount(t, bin, env, "fuse.ovl", "--backend", "fuse", "--lower", d[0], "--upper", d[1], "--work", d[2], d[3])
	})

	for _, b := range []string{"native", "fuse"} {
		// fuse is served by ovl itself (backend.Server), not a daemon.
		t.Run("--foreground until SIGTERM/"+b, func(t *testing.T) {
			d := mountDirs(t, t.TempDir(), "l", "u", "w", "m")
			mountTree(t, d[0], map[string]string{"f": "lower"})
			testutil.CleanupMount(t, d[3])
			cmd := exec.Command(bin, "mount", "--foreground", "--backend", b, "--lower", d[0], "--upper", d[1], "--work", d[2], d[3])
			cmd.Env = append(os.Environ(), env...)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if !strings.HasPrefix(line, "mounted "+d[3]) || !strings.Contains(line, b+" backend") {
				t.Fatalf("ovl mount --foreground printed %q, want the mounted line naming the %s backend", line, b)
			}
			if mountRead(t, filepath.Join(d[3], "f")) != "lower" {
				t.Error("foreground mount does not show its lower")
			}
			if serves := mountHoldsDevFuse(t, cmd.Process.Pid); serves != (b == "fuse") {
				t.Errorf("ovl mount --foreground holds /dev/fuse: %v, want %v", serves, b == "fuse")
			}
			if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("ovl mount --foreground after SIGTERM: %v, want exit 0", err)
			}
			if _, ok := mountIsMounted(t, d[3]); ok {
				t.Errorf("%s still mounted after ovl mount --foreground ended", d[3])
			}
		})
	}

	t.Run("bad spec: clear error, nothing made or mounted", func(t *testing.T) {
		root := t.TempDir()
		d := mountDirs(t, root, "l", "u", "w", "m")
		missing := filepath.Join(root, "no-such-layer")
		_, stderr, code := checkOVL(t, bin, env, "mount", "--lower", missing+":"+d[0], "--upper", d[1], "--work", d[2], d[3])
		if code == 0 || !strings.Contains(stderr, missing) {
			t.Errorf("exit %d, stderr %q; want a failure naming %s", code, stderr, missing)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("ovl mount created %s", missing)
		}
		if info := mountInfo(t); strings.Contains(info, root) {
			t.Errorf("a refused mount left a mount under %s:\n%s", root, info)
		}
		_, stderr, code = checkOVL(t, bin, env, "mount", "--lower", d[0], "--upper", d[1], "--work", filepath.Join(d[1], "w"), d[3])
		if code == 0 || !strings.Contains(stderr, "work") {
			t.Errorf("work inside upper: exit %d, stderr %q; want a failure naming work", code, stderr)
		}
		_, stderr, code = checkOVL(t, bin, env, "mount", "--backend", "zfs", "--lower", d[0], d[3])
		if code == 0 || !strings.Contains(stderr, `unknown backend "zfs"`) {
			t.Errorf("--backend zfs: exit %d, stderr %q; want an unknown-backend failure", code, stderr)
		}
	})

	t.Run("umount refuses what ovl did not mount", func(t *testing.T) {
		m := t.TempDir()
		_, stderr, code := checkOVL(t, bin, env, "umount", m)
		if code == 0 || !strings.Contains(stderr, "not a mount point") {
			t.Errorf("umount of a plain dir: exit %d, stderr %q", code, stderr)
		}
		testutil.CleanupMount(t, m)
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		_, stderr, code = checkOVL(t, bin, env, "umount", m)
		if code == 0 || !strings.Contains(stderr, "type tmpfs") {
			t.Errorf("umount of a tmpfs: exit %d, stderr %q", code, stderr)
		}
		if _, ok := mountIsMounted(t, m); !ok {
			t.Error("ovl umount unmounted a tmpfs")
		}
	})
}

// mountAndUmount runs `ovl mount args...` (whose last arg is the target),
// checks a mount of type wantType shows the lower's file "f" and takes a
// write into the upper (the arg after --upper), then `ovl umount`s it.
func mountAndUmount(t *testing.T, bin string, env []string, wantType string, args ...string) {
	t.Helper()
	m := args[len(args)-1]
	upper := ""
	for i, a := range args {
		if a == "--upper" {
			upper = args[i+1]
		}
	}
	out, _, code := checkOVL(t, bin, env, append([]string{"mount", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("ovl mount exited %d", code)
	}
	var res mountResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ovl mount --json: %v\n%s", err, out)
	}
	if typ, ok := mountIsMounted(t, m); !ok || typ != wantType {
		t.Fatalf("after ovl mount (backend %s), %s is mounted=%v type %q; want %s", res.Backend, m, ok, typ, wantType)
	}
	if mountRead(t, filepath.Join(m, "f")) != "lower" {
		t.Error("mount does not show its lower")
	}
	if err := os.WriteFile(filepath.Join(m, "new"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	mountUmountCLI(t, bin, env, m)
	if got := mountRead(t, filepath.Join(upper, "new")); got != "new" {
		t.Errorf("upper/new = %q, want the write made through the mount", got)
	}
}

// TestMountCLIAsNobody: an ordinary user's `ovl mount` gets the FUSE
// backend (kernel overlay would vanish with its user namespace), and
// `ovl umount` undoes it with fusermount3.
func TestMountCLIAsNobody(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RequireRoot(t)
		dir := testutil.SharedDir(t)
		testutil.CleanupMount(t, filepath.Join(dir, "m"))
		testutil.RunAsNobody(t, "OVL_TEST_BINARY="+checkBuildOVL(t), "OVL_TEST_DIR="+dir)
		return
	}
	dir := os.Getenv("OVL_TEST_DIR")
	d := mountDirs(t, dir, "l", "u", "w", "m")
	mountTree(t, d[0], map[string]string{"f": "lower"})
	env := []string{"OVL_RUNTIME_DIR=" + filepath.Join(dir, "run"), "OVL_STATE_DIR=" + filepath.Join(dir, "state"), "OVL_BACKEND="}
	mountAndUmount(t, os.Getenv("OVL_TEST_BINARY"), env, "fuse.ovl", "--lower", d[0], "--upper", d[1], "--work", d[2], d[3])
}

func mountInfo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mountHoldsDevFuse reports whether process pid has /dev/fuse open: it
// serves a FUSE mount itself.
func mountHoldsDevFuse(t *testing.T, pid int) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(filepath.Join(dir, fd.Name())); target == "/dev/fuse" {
			return true
		}
	}
	return false
}
