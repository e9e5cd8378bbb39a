package fusefs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// TestWhiteoutLookingNames checks that names starting with ".wh." are
// names like any other in layers in the kernel's format, as on kernel
// overlay: in a lower layer they neither hide themselves nor their
// siblings, and through the mount they can be created as files,
// directories, symlinks and hard links, renamed, removed and made again.
func TestWhiteoutLookingNames(t *testing.T) {
	o := newOracle(t, 2, false, func(s *stack) {
		writeFiles(t, s.lowers[1], map[string]string{"a": "a", "d/x": "x", "e/f": "f", "g/h": "h", "keep": "k"})
		writeFiles(t, s.lowers[0], map[string]string{".wh.a": "", ".wh..wh..opq": "", "d/.wh..wh..opq": "",
			"e/.wh.f": "wh", ".wh..wh.plnk/": "", "g/.wh.h/": ""})
	})
	const wh, opq = ".wh.a", ".wh..wh..opq"
	kinds := []struct {
		name string
		make func(p string) error
	}{
		{"file", func(p string) error { return os.WriteFile(p, []byte("new"), 0o644) }},
		{"dir", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"symlink", func(p string) error { return os.Symlink("target", p) }},
		{"hardlink", func(p string) error { return os.Link(filepath.Join(filepath.Dir(filepath.Dir(p)), "keep"), p) }},
	}
	for _, k := range kinds {
		for _, name := range []string{wh, opq, ".wh.keep"} {
			for _, dir := range []string{"new-" + k.name, "d"} {
				rel := filepath.Join(dir, name)
				if dir != "d" {
					o.do("mkdir "+dir, func(r string) error { return os.MkdirAll(filepath.Join(r, dir), 0o755) })
				} else if k.name != "file" {
					continue // one of each in the merged lower dir is enough
				}
				o.do("create "+k.name+" "+rel, func(r string) error { return k.make(filepath.Join(r, rel)) })
			}
		}
	}
	o.do("rename .wh.keep over keep", func(r string) error {
		return os.Rename(filepath.Join(r, "new-file", ".wh.keep"), filepath.Join(r, "keep"))
	})
	o.do("rename a to .wh.x", func(r string) error { return os.Rename(filepath.Join(r, "a"), filepath.Join(r, ".wh.x")) })
	o.do("unlink d/.wh..wh..opq", func(r string) error { return os.Remove(filepath.Join(r, "d", opq)) })
	o.do("rm -rf g", func(r string) error { return os.RemoveAll(filepath.Join(r, "g")) })
	o.do("mkdir g", func(r string) error { return os.Mkdir(filepath.Join(r, "g"), 0o755) })
	o.do("create g/.wh.h", func(r string) error { return os.WriteFile(filepath.Join(r, "g", ".wh.h"), nil, 0o644) })
	o.do("create g/h", func(r string) error { return os.WriteFile(filepath.Join(r, "g", "h"), nil, 0o644) })

	for _, d := range []string{".", "d", "e", "g", "new-file", "new-dir", "new-symlink", "new-hardlink", ".wh..wh.plnk"} {
		k, f := listing(t, filepath.Join(o.k.target, d)), listing(t, filepath.Join(o.f.target, d))
		if !slices.Equal(k, f) {
			t.Errorf("listing %s:\n kernel %v\n fusefs %v", d, k, f)
		}
	}
	for _, p := range []string{".wh.a", ".wh..wh..opq", "d/x", "e/f", "e/.wh.f", ".wh.x", "keep", "g/.wh.h", "g/h", "new-dir/.wh.a",
		"new-symlink/.wh..wh..opq", "new-hardlink/.wh.a"} {
		o.do("lstat "+p, func(r string) error {
			var st unix.Stat_t
			return unix.Lstat(filepath.Join(r, p), &st)
		})
		if err := unix.Access(filepath.Join(o.f.target, p), unix.F_OK); err != nil && !strings.HasPrefix(p, "new-symlink") {
			t.Errorf("%s is not there on fusefs: %v", p, err)
		}
	}
	// Each upper read by the other: the kernel mounts fusefs's upper (and
	// the reverse) with the same tree.
	for _, up := range []*stack{o.k, o.f} {
		spec := up.spec()
		spec.Lowers = append([]string{spec.Upper}, spec.Lowers...)
		spec.Upper, spec.Work = "", ""
		spec.Target = t.TempDir()
		mountKernel(t, spec)
	}
}

// TestOCILayerWhiteouts checks that a lower layer that records the OCI
// format (layer.RecordFormat) is read in it: ".wh.NAME" hides NAME below,
// ".wh..wh..opq" makes its directory opaque, neither shows, and a name
// starting with ".wh." in a kernel-format layer below still shows.
func TestOCILayerWhiteouts(t *testing.T) {
	s := newStack(t, t.TempDir(), 3)
	writeFiles(t, s.lowers[2], map[string]string{"a": "a", "b": "b", "d/x": "x", "d/y": "y", ".wh.real": "real", "e/z": "z"})
	writeFiles(t, s.lowers[1], map[string]string{".wh.a": "", "d/.wh..wh..opq": "", "d/new": "n", ".wh..wh.plnk/": "", ".wh.e": ""})
	writeFiles(t, s.lowers[0], map[string]string{"top": "t"})
	fd, err := unix.Open(s.lowers[1], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	mustDo(t, err)
	mustDo(t, layer.RecordFormat(fd, layer.OCIFormat, layer.User))
	unix.Close(fd)
	mountFuse(t, s.spec())
	for dir, want := range map[string][]string{
		".": {".wh.real:----------", "b:----------", "d:d---------", "top:----------"},
		"d": {"new:----------"},
	} {
		if got := listing(t, filepath.Join(s.target, dir)); !slices.Equal(got, want) {
			t.Errorf("listing %s: %v, want %v", dir, got, want)
		}
	}
	for _, p := range []string{"a", "e", "d/x", ".wh.a", "d/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(s.target, p)); !os.IsNotExist(err) {
			t.Errorf("%s: lstat %v, want it hidden", p, err)
		}
	}
	// Deleting through the mount writes the kernel's whiteout in the upper.
	mustDo(t, os.Remove(filepath.Join(s.target, "b")))
	var st unix.Stat_t
	mustDo(t, unix.Lstat(filepath.Join(s.upper, "b"), &st))
	if !layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
		t.Errorf("upper/b is mode %o, want a 0/0 device whiteout", st.Mode)
	}
}
