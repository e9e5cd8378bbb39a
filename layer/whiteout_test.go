package layer_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// A format case builds directory d of a top layer in one on-disk format,
// over a bottom layer whose d holds "victim" and "other".
type woFormatCase struct {
	name string
	// build fills top/d (already made).
	build func(t *testing.T, d string)
	// wantOpacity is what DirOpacity says of top/d.
	wantOpacity layer.Opacity
	// wantKinds is what ReadDir says of top/d's entries, by name.
	wantKinds map[string]layer.Kind
	// wantTargets lists whiteouts' targets when not the name itself.
	wantTargets map[string]string
	// kernel says the kernel reads this format, in the namespace given
	// by userxattr, so a mount must agree with the classification.
	kernel    bool
	userxattr bool
	// format is the top layer's format, recorded on its root.
	format layer.Format
}

func woMknod00(t *testing.T, p string) {
	t.Helper()
	if err := unix.Mknod(p, unix.S_IFCHR, 0); err != nil {
		t.Fatalf("mknod %s: %v", p, err)
	}
}

func woSetxattr(t *testing.T, p, name, value string) {
	t.Helper()
	if err := unix.Lsetxattr(p, name, []byte(value), 0); err != nil {
		t.Fatalf("woSetxattr %s %s: %v", p, name, err)
	}
}

func woTouch(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func woFormatCases() []woFormatCase {
	return []woFormatCase{
		{name: "char device 0/0",
			build:       func(t *testing.T, d string) { woMknod00(t, filepath.Join(d, "victim")) },
			wantKinds:   map[string]layer.Kind{"victim": layer.Whiteout},
			wantOpacity: layer.Transparent, kernel: true},
		{name: "other char device",
			build: func(t *testing.T, d string) {
				if err := unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					t.Fatal(err)
				}
			},
			wantKinds:   map[string]layer.Kind{"null": layer.Visible},
			wantOpacity: layer.Transparent, kernel: true},
		{name: "trusted opaque y",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, "own"), "")
				woSetxattr(t, d, "trusted.overlay.opaque", "y")
			},
			wantKinds:   map[string]layer.Kind{"own": layer.Visible},
			wantOpacity: layer.OpaqueDir, kernel: true},
		{name: "user opaque y",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, "own"), "")
				woSetxattr(t, d, "user.overlay.opaque", "y")
			},
			wantKinds:   map[string]layer.Kind{"own": layer.Visible},
			wantOpacity: layer.OpaqueDir, kernel: true, userxattr: true},
		{name: "trusted xattr whiteout in opaque x",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, "victim"), "")
				woSetxattr(t, filepath.Join(d, "victim"), "trusted.overlay.whiteout", "")
				woTouch(t, filepath.Join(d, "own"), "")
				woSetxattr(t, d, "trusted.overlay.opaque", "x")
			},
			wantKinds:   map[string]layer.Kind{"victim": layer.Whiteout, "own": layer.Visible},
			wantOpacity: layer.HasXattrWhiteouts, kernel: true},
		{name: "user xattr whiteout in opaque x",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, "victim"), "")
				woSetxattr(t, filepath.Join(d, "victim"), "user.overlay.whiteout", "")
				woTouch(t, filepath.Join(d, "own"), "")
				woSetxattr(t, d, "user.overlay.opaque", "x")
			},
			wantKinds:   map[string]layer.Kind{"victim": layer.Whiteout, "own": layer.Visible},
			wantOpacity: layer.HasXattrWhiteouts, kernel: true, userxattr: true},
		{name: "xattr whiteout without opaque x parent",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, "victim"), "")
				woSetxattr(t, filepath.Join(d, "victim"), "trusted.overlay.whiteout", "")
			},
			wantKinds:   map[string]layer.Kind{"victim": layer.Visible},
			wantOpacity: layer.Transparent, kernel: true},
		{name: "non-empty file with whiteout xattr",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, "victim"), "data")
				woSetxattr(t, filepath.Join(d, "victim"), "trusted.overlay.whiteout", "")
				woSetxattr(t, d, "trusted.overlay.opaque", "x")
			},
			wantKinds:   map[string]layer.Kind{"victim": layer.Visible},
			wantOpacity: layer.HasXattrWhiteouts, kernel: true},
		{name: "OCI .wh.NAME",
			build:       func(t *testing.T, d string) { woTouch(t, filepath.Join(d, ".wh.victim"), "") },
			wantKinds:   map[string]layer.Kind{".wh.victim": layer.Whiteout},
			wantTargets: map[string]string{".wh.victim": "victim"},
			wantOpacity: layer.Transparent, format: layer.OCIFormat},
		{name: "OCI opaque marker",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, ".wh..wh..opq"), "")
				woTouch(t, filepath.Join(d, "own"), "")
			},
			wantKinds:   map[string]layer.Kind{".wh..wh..opq": layer.Opaque, "own": layer.Visible},
			wantOpacity: layer.OpaqueDir, format: layer.OCIFormat},
		{name: "AUFS meta",
			build: func(t *testing.T, d string) {
				if err := os.Mkdir(filepath.Join(d, ".wh..wh.plnk"), 0o700); err != nil {
					t.Fatal(err)
				}
				woTouch(t, filepath.Join(d, ".wh..wh.aufs"), "")
			},
			wantKinds:   map[string]layer.Kind{".wh..wh.plnk": layer.Meta, ".wh..wh.aufs": layer.Meta},
			wantOpacity: layer.Transparent, format: layer.OCIFormat},
		// The same names in the kernel's format are names like any other,
		// as the kernel shows them.
		{name: ".wh. names in the kernel's format",
			build: func(t *testing.T, d string) {
				woTouch(t, filepath.Join(d, ".wh.victim"), "")
				woTouch(t, filepath.Join(d, ".wh..wh..opq"), "")
				if err := os.Mkdir(filepath.Join(d, ".wh..wh.plnk"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			wantKinds:   map[string]layer.Kind{".wh.victim": layer.Visible, ".wh..wh..opq": layer.Visible, ".wh..wh.plnk": layer.Visible},
			wantOpacity: layer.Transparent, kernel: true},
	}
}

// woReadDir runs layer.Reader.ReadDir on dir, a directory of a layer in
// format f.
func woReadDir(t *testing.T, dir string, f layer.Format) ([]layer.Entry, layer.Opacity) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ents, op, err := layer.Reader{Format: f}.ReadDir(fd)
	if err != nil {
		t.Fatalf("ReadDir %s: %v", dir, err)
	}
	return ents, op
}

// woMerge is what the layer package says the union of top over bottom
// shows: top's visible entries, and bottom's that top neither whites out
// nor hides by being opaque.
func woMerge(t *testing.T, top, bottom string) []string {
	t.Helper()
	ents, op := woReadDir(t, top, layer.KernelFormat)
	seen := map[string]bool{}
	hidden := map[string]bool{}
	for _, e := range ents {
		switch e.Kind {
		case layer.Visible:
			seen[e.Name] = true
		case layer.Whiteout:
			hidden[e.Target] = true
		}
	}
	if op != layer.OpaqueDir {
		below, _ := woReadDir(t, bottom, layer.KernelFormat)
		for _, e := range below {
			if e.Kind == layer.Visible && !hidden[e.Name] {
				seen[e.Name] = true
			}
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestFormatsRead classifies every whiteout and opaque format found in
// the wild and, for the ones the kernel reads, checks a kernel overlay
// mount of the same layers shows what the classification says.
func TestFormatsRead(t *testing.T) {
	testutil.RequireRoot(t) // mknod and trusted.* xattrs
	for _, tc := range woFormatCases() {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			top, bottom := filepath.Join(root, "top", "d"), filepath.Join(root, "bottom", "d")
			for _, d := range []string{top, bottom} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			woTouch(t, filepath.Join(bottom, "victim"), "from bottom")
			woTouch(t, filepath.Join(bottom, "other"), "from bottom")
			tc.build(t, top)
			if tc.format != layer.KernelFormat {
				must(t, layer.RecordFormat(woOpenDir(t, filepath.Dir(top)), tc.format, layer.Trusted))
				roots, err := layer.Roots([]string{filepath.Dir(top)})
				if err != nil || roots[0].Format != tc.format {
					t.Fatalf("recorded format %v, read back %v (%v)", tc.format, roots, err)
				}
			}

			ents, op := woReadDir(t, top, tc.format)
			if op != tc.wantOpacity {
				t.Errorf("opacity = %v, want %v", op, tc.wantOpacity)
			}
			got := map[string]layer.Kind{}
			for _, e := range ents {
				got[e.Name] = e.Kind
				want := e.Name
				if w, ok := tc.wantTargets[e.Name]; ok {
					want = w
				}
				if e.Target != want {
					t.Errorf("%s: target %q, want %q", e.Name, e.Target, want)
				}
			}
			if !reflect.DeepEqual(got, tc.wantKinds) {
				t.Errorf("kinds = %v, want %v", got, tc.wantKinds)
			}
			if !tc.kernel {
				return
			}
			ours := woMerge(t, top, bottom)
			kernel := woListMerged(t, root, tc.userxattr, "d")
			if !reflect.DeepEqual(ours, kernel) {
				t.Errorf("merged d/: layer package says %v, kernel overlayfs shows %v", ours, kernel)
			}
		})
	}
}

func TestIsOverlayXattr(t *testing.T) {
	for name, want := range map[string]bool{
		"trusted.overlay.opaque":   true,
		"user.overlay.whiteout":    true,
		"trusted.overlay.redirect": true,
		"user.overlay":             false,
		"user.mime_type":           false,
		"security.selinux":         false,
		"trusted.overlayfoo":       false,
	} {
		if got := layer.IsOverlayXattr(name); got != want {
			t.Errorf("IsOverlayXattr(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestNamespaceXattr(t *testing.T) {
	if got := layer.User.Xattr(layer.KeyOpaque); got != "user.overlay.opaque" {
		t.Errorf("User.Xattr(opaque) = %q", got)
	}
	if got := layer.Trusted.Xattr(layer.KeyWhiteout); got != "trusted.overlay.whiteout" {
		t.Errorf("Trusted.Xattr(whiteout) = %q", got)
	}
}

// TestWriteFormats writes a whiteout and an opaque directory with the
// layer package as root and checks the bytes on disk are the kernel's
// format, and that a kernel mount honours them.
func TestWriteFormats(t *testing.T) {
	testutil.RequireRoot(t)
	for _, ns := range []layer.Namespace{layer.Trusted, layer.User} {
		t.Run(ns.String(), func(t *testing.T) {
			root := t.TempDir()
			top, bottom := filepath.Join(root, "top", "d"), filepath.Join(root, "bottom", "d")
			for _, d := range []string{top, bottom, filepath.Join(bottom, "sub"), filepath.Join(top, "sub")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			woTouch(t, filepath.Join(bottom, "victim"), "")
			woTouch(t, filepath.Join(bottom, "other"), "")
			woTouch(t, filepath.Join(bottom, "sub", "hidden"), "")
			woTouch(t, filepath.Join(top, "sub", "own"), "")

			dfd := woOpenDir(t, top)
			if err := layer.MakeWhiteout(dfd, "victim", ns); err != nil {
				t.Fatal(err)
			}
			sfd := woOpenDir(t, filepath.Join(top, "sub"))
			if err := layer.MakeOpaque(sfd, ns); err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(top, "victim"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("MakeWhiteout wrote mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
			}
			v := make([]byte, 8)
			n, err := unix.Lgetxattr(filepath.Join(top, "sub"), ns.Xattr(layer.KeyOpaque), v)
			if err != nil || string(v[:n]) != "y" {
				t.Errorf("MakeOpaque: %s = %q, %v; want \"y\"", ns.Xattr(layer.KeyOpaque), v[:max(n, 0)], err)
			}
			if _, err := os.Lstat(filepath.Join(top, "sub", layer.OpaqueMarker)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("MakeOpaque as root left an OCI marker (%v); want the xattr only", err)
			}
			if got, want := woListMerged(t, root, ns == layer.User, "d"), []string{"other", "sub"}; !reflect.DeepEqual(got, want) {
				t.Errorf("kernel shows d/ = %v, want %v (victim whited out)", got, want)
			}
			sub := woListMerged(t, root, ns == layer.User, "d/sub")
			if !reflect.DeepEqual(sub, []string{"own"}) {
				t.Errorf("kernel shows d/sub = %v, want [own] (opaque)", sub)
			}
		})
	}
}

// woListMerged mounts root/top over root/bottom read-only with kernel
// overlayfs and lists rel in the merged tree.
func woListMerged(t *testing.T, root string, userxattr bool, rel string) []string {
	t.Helper()
	target, err := os.MkdirTemp(root, "m")
	if err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + filepath.Join(root, "top") + ":" + filepath.Join(root, "bottom")
	if userxattr {
		opts += ",userxattr"
	}
	testutil.CleanupMount(t, target)
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay %s: %v", opts, err)
	}
	defer unix.Unmount(target, 0)
	return testutil.Names(t, filepath.Join(target, rel))
}

func woOpenDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestWriteFormatsUnprivileged writes as uid 65534: the 0/0 whiteout
// (Linux 5.8+ lets anyone make it) and user.overlay.opaque work; a
// trusted.overlay.opaque is refused, and MakeOpaque says why rather than
// write anything else (an OCI marker is an ordinary name to the kernel).
func TestWriteFormatsUnprivileged(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t)
		return
	}
	root := testutil.SharedDir(t)
	dfd := woOpenDir(t, root)
	if err := layer.MakeWhiteout(dfd, "victim", layer.User); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "victim"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("unprivileged MakeWhiteout wrote mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
	}
	user := filepath.Join(root, "user")
	must(t, os.Mkdir(user, 0o755))
	if err := layer.MakeOpaque(woOpenDir(t, user), layer.User); err != nil {
		t.Fatalf("MakeOpaque(user): %v", err)
	}
	if _, op := woReadDir(t, user, layer.KernelFormat); op != layer.OpaqueDir {
		t.Errorf("MakeOpaque(user) as uid 65534: DirOpacity = %v, want OpaqueDir", op)
	}
	trusted := filepath.Join(root, "trusted")
	must(t, os.Mkdir(trusted, 0o755))
	err := layer.MakeOpaque(woOpenDir(t, trusted), layer.Trusted)
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "CAP_SYS_ADMIN") {
		t.Errorf("MakeOpaque(trusted) as uid 65534: %v, want EPERM saying trusted xattrs need CAP_SYS_ADMIN", err)
	}
	if names := testutil.Names(t, trusted); len(names) != 0 {
		t.Errorf("MakeOpaque(trusted) as uid 65534 left %v in the directory", names)
	}
}

func TestKindString(t *testing.T) {
	got := []string{layer.Visible.String(), layer.Whiteout.String(), layer.Opaque.String(), layer.Meta.String()}
	if strings.Join(got, ",") != "visible,whiteout,opaque-marker,meta" {
		t.Errorf("Kind strings = %v", got)
	}
}
