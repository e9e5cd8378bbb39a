package fusefs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestOverlayRecordsMatchKernel copies the same lower entries up under
// the kernel's overlay and under fusefs (one lower, two uppers) and
// demands byte-identical overlay.origin and the same overlay.impure on
// every upper entry, and an overlay.uuid on both upper roots: the kernel
// must read fusefs's upper as one it wrote itself.
func TestOverlayRecordsMatchKernel(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	writeFiles(t, lower, map[string]string{
		"d/f.txt":      "data",
		"d/sub/g.txt":  "g",
		"d/link":       "->f.txt",
		"top.txt":      "top",
		"hard/a":       "shared",
		"hard/keep/k":  "k",
		"other/x.txt":  "x",
		"other/empty/": "",
		"wh/w":         "w",
	})
	if err := os.Link(filepath.Join(lower, "hard/a"), filepath.Join(lower, "hard/b")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(lower, "d/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) layer.Spec {
		spec := layer.Spec{Lowers: []string{lower}, Upper: filepath.Join(dir, name, "upper"),
			Work: filepath.Join(dir, name, "work"), Target: filepath.Join(dir, name, "mnt"), Namespace: layer.Trusted}
		for _, d := range []string{spec.Upper, spec.Work, spec.Target} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return spec
	}
	kspec, fspec := mk("k"), mk("f")
	testutil.CleanupMount(t, kspec.Target)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,index=off,redirect_dir=off,metacopy=off", lower, kspec.Upper, kspec.Work)
	if err := unix.Mount("overlay", kspec.Target, "overlay", 0, opts); err != nil {
		t.Fatalf("kernel overlay: %v", err)
	}
	mountFuse(t, fspec)

	// Each change copies up: files, a directory, a symlink, a fifo, one
	// link of a lower hard link (no origin), and a rename and a link of
	// copied-up files into directories that only the upper has (impure
	// there, also when the new name replaces a whiteout), but not a new
	// file (no impure).
	for _, root := range []string{kspec.Target, fspec.Target} {
		p := func(s string) string { return filepath.Join(root, s) }
		steps := []error{
			os.Chmod(p("d/f.txt"), 0o600),
			os.Chmod(p("d/sub"), 0o700),
			os.Lchown(p("d/link"), 0, 0),
			os.Chmod(p("d/fifo"), 0o600),
			os.Chmod(p("top.txt"), 0o600),
			os.WriteFile(p("hard/a"), []byte("changed"), 0o644),
			os.Mkdir(p("fresh"), 0o755),
			os.Chmod(p("other/x.txt"), 0o600),
			os.Rename(p("other/x.txt"), p("fresh/x.txt")),
			os.Mkdir(p("fresh2"), 0o755),
			os.Link(p("d/f.txt"), p("fresh2/f")),
			os.Mkdir(p("fresh3"), 0o755),
			os.WriteFile(p("fresh3/new"), nil, 0o644),
			os.Remove(p("wh/w")),
			os.Link(p("top.txt"), p("wh/w")),
		}
		for i, err := range steps {
			if err != nil {
				t.Fatalf("%s: step %d: %v", root, i, err)
			}
		}
	}

	records := func(upper string) map[string]string {
		out := map[string]string{}
		err := filepath.Walk(upper, func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(upper, path)
			for _, key := range []string{"origin", "impure"} {
				v, err := layer.GetXattr(path, layer.Trusted.Xattr(key))
				if err == nil {
					out[rel+" "+key] = fmt.Sprintf("%x", v)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	krec, frec := records(kspec.Upper), records(fspec.Upper)
	for k, v := range krec {
		if frec[k] != v {
			t.Errorf("%s: kernel wrote %q, fusefs %q", k, v, frec[k])
		}
	}
	for k, v := range frec {
		if _, ok := krec[k]; !ok {
			t.Errorf("%s: fusefs wrote %q, the kernel nothing", k, v)
		}
	}
	if krec["d/f.txt origin"] == "" || !bytes.HasPrefix([]byte(krec["d/f.txt origin"]), []byte("00fb")) {
		t.Errorf("kernel origin of d/f.txt %q: not a file handle; the comparison proves nothing", krec["d/f.txt origin"])
	}
	for _, upper := range []string{kspec.Upper, fspec.Upper} {
		if v, err := layer.GetXattr(upper, layer.Trusted.Xattr("uuid")); err != nil || len(v) != 16 {
			t.Errorf("%s: overlay.uuid = %x, %v; want 16 bytes", upper, v, err)
		}
	}
}

// TestInodeStableAcrossRemount: a file keeps its inode number through
// copy-up and a remount of the same layers, in stat and in readdir, as
// under the kernel's overlay on one filesystem.
func TestInodeStableAcrossRemount(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 1)
	writeFiles(t, s.lowers[0], map[string]string{"d/f.txt": "data", "top.txt": "top"})
	type seen struct{ stat, dirent uint64 }
	look := func(root string) map[string]seen {
		out := map[string]seen{}
		for _, dir := range []string{"", "d"} {
			for name, dino := range direntInos(t, filepath.Join(root, dir)) {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(root, dir, name), &st); err != nil {
					t.Fatal(err)
				}
				if st.Ino != dino {
					t.Errorf("%s: readdir d_ino %d, stat st_ino %d", filepath.Join(dir, name), dino, st.Ino)
				}
				out[filepath.Join(dir, name)] = seen{stat: st.Ino, dirent: dino}
			}
		}
		return out
	}
	m := mountFuse(t, s.spec())
	before := look(s.target)
	for _, f := range []string{"d/f.txt", "top.txt"} {
		if err := os.Chmod(filepath.Join(s.target, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	during := look(s.target)
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	mountFuse(t, s.spec())
	after := look(s.target)
	for name, b := range before {
		for stage, got := range map[string]seen{"after copy-up": during[name], "after remount": after[name]} {
			if got.stat != b.stat {
				t.Errorf("%s: st_ino %d %s, was %d", name, got.stat, stage, b.stat)
			}
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s: new after remount", name)
		}
	}
}

// direntInos lists dir with getdents64 and returns each name's d_ino.
func direntInos(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	out := map[string]uint64{}
	buf := make([]byte, 1<<16)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatalf("getdents %s: %v", dir, err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			name := unix.ByteSliceToString(b[19:reclen])
			if name != "." && name != ".." {
				out[name] = binary.NativeEndian.Uint64(b[0:8])
			}
			b = b[reclen:]
		}
	}
}
