package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/fusefs"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// fixture writes files under root from a compact description, failing t
// on any error.
type fixture struct {
	t    *testing.T
	root string
}

func (f fixture) p(rel string) string { return filepath.Join(f.root, rel) }

func (f fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f fixture) dir(rel string, mode os.FileMode) {
	f.t.Helper()
	f.must(os.MkdirAll(f.p(rel), 0o755))
	f.must(os.Chmod(f.p(rel), mode))
}

func (f fixture) file(rel, text string, mode os.FileMode) {
	f.t.Helper()
	f.must(os.WriteFile(f.p(rel), []byte(text), 0o600))
	f.must(os.Chmod(f.p(rel), mode))
}

func (f fixture) whiteout(rel string) {
	f.t.Helper()
	f.must(unix.Mknod(f.p(rel), unix.S_IFCHR, 0))
}

func (f fixture) xattr(rel, name, value string) {
	f.t.Helper()
	f.must(unix.Lsetxattr(f.p(rel), name, []byte(value), 0))
}

// times gives every entry under root a distinct modification time with
// nanoseconds, deepest first, so that a lost time shows.
func (f fixture) times() {
	f.t.Helper()
	var paths []string
	filepath.WalkDir(f.root, func(p string, d os.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		ts := unix.Timespec{Sec: 1_600_000_000 + int64(i)*1000, Nsec: int64(123456789 + i)}
		f.must(unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// lowerFixture is the layer the test layers go over.
func lowerFixture(t *testing.T, root string) {
	f := fixture{t, root}
	for _, d := range []string{"etc", "var/cache", "opt/a", "d2", "keep"} {
		f.dir(d, 0o755)
	}
	for _, p := range []string{"etc/passwd", "etc/group", "var/cache/x", "opt/a/1", "opt/a/2", "d2/g", "d2/h", "keep/k"} {
		f.file(p, "lower "+p+"\n", 0o644)
	}
	f.times()
}

// kernelLayer writes a layer using only the encodings the kernel reads
// on a trusted.* mount: 0/0 whiteouts, trusted.overlay.opaque "y", and
// 6.7+ xattr whiteouts in an "x" directory; plus every kind of file and
// metadata a layer keeps.
func kernelLayer(t *testing.T, root string) {
	f := fixture{t, root}
	f.must(os.Chmod(root, 0o750))
	f.dir("etc", 0o755)
	f.xattr("etc", "user.dir", "on a directory")
	f.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
	f.must(os.Lchown(f.p("etc/passwd"), 1234, 5678))
	f.whiteout("etc/group")
	f.dir("opt/a", 0o700)
	f.xattr("opt", "trusted.overlay.impure", "y") // overlay metadata: never copied
	f.xattr("opt/a", layer.Trusted.Xattr(layer.KeyOpaque), "y")
	f.file("opt/a/3", "three\n", 0o600)
	f.dir("d2", 0o755)
	f.xattr("d2", layer.Trusted.Xattr(layer.KeyOpaque), "x")
	f.file("d2/g", "", 0o644)
	f.xattr("d2/g", layer.Trusted.Xattr(layer.KeyWhiteout), "")
	f.dir("var", 0o755)
	f.whiteout("var/cache")
	f.dir("bin", 0o755)
	f.file("bin/tool", "#!/bin/sh\n", 0o4755)
	f.file("bin/secret", "", 0)
	f.xattr("bin/tool", "user.note", "binary \x00 value")
	f.xattr("bin/tool", "trusted.ovl-test", "trusted value")
	f.must(os.Link(f.p("bin/tool"), f.p("bin/tool-again")))
	f.must(os.Link(f.p("bin/tool"), f.p("etc/tool-link")))
	f.must(os.Symlink("../etc/passwd", f.p("bin/passwd")))
	f.must(os.Lchown(f.p("bin/passwd"), 42, 43))
	f.must(unix.Mkfifo(f.p("bin/fifo"), 0o640))
	f.must(unix.Mknod(f.p("bin/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	f.dir("tmp", 0o1777)
	long := strings.Repeat("long-name-", 12)
	f.dir("deep/"+long, 0o755)
	f.file("deep/"+long+"/"+long, "past 100 bytes of name\n", 0o644)
	f.dir("ro", 0o555) // read-only: its entries must still be written
	f.must(os.Chmod(f.p("ro"), 0o755))
	f.file("ro/inside", "x", 0o444)
	f.must(os.Chmod(f.p("ro"), 0o555))
	f.times()
}

// otherEncodings writes a layer with the encodings the kernel of a
// trusted.* mount does not read but ovl does: OCI ".wh." files, the
// ".wh..wh..opq" marker (the layer records that it is in the OCI format),
// user.overlay.opaque.
func otherEncodings(t *testing.T, root string) {
	f := fixture{t, root}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	f.must(err)
	f.must(layer.RecordFormat(fd, layer.OCIFormat, layer.Trusted))
	unix.Close(fd)
	f.dir("etc", 0o755)
	f.file("etc/.wh.group", "", 0o644)
	f.dir("opt/a", 0o755)
	f.file("opt/a/.wh..wh..opq", "", 0o644)
	f.file("opt/a/new", "new\n", 0o644)
	f.dir("keep", 0o755)
	f.xattr("keep", layer.User.Xattr(layer.KeyOpaque), "y")
	f.file("keep/only", "only\n", 0o644)
	f.dir("d2", 0o755)
	f.xattr("d2", layer.User.Xattr(layer.KeyOpaque), "x")
	f.file("d2/h", "", 0o644)
	f.xattr("d2/h", layer.User.Xattr(layer.KeyWhiteout), "")
	f.times()
}

func packBytes(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteLayer(context.Background(), dir, &buf); err != nil {
		t.Fatalf("WriteLayer %s: %v", dir, err)
	}
	return buf.Bytes()
}

func unpackInto(t *testing.T, data []byte) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ReadLayer(context.Background(), bytes.NewReader(data), dst, layer.Trusted); err != nil {
		t.Fatalf("ReadLayer: %v", err)
	}
	return dst
}

// tarEntries lists a tar's entries as "name type mode uid:gid".
func tarEntries(t *testing.T, data []byte) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h
	}
}

// TestLayerTarRoundTrip: a layer written as an OCI tar and read back
// gives the same tar again, byte for byte (so every owner, mode, time,
// xattr, link and whiteout survived), the tar has the OCI markers, the
// layer read back has the kernel's whiteouts, and writing one layer
// twice gives the same bytes.
func TestLayerTarRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	for name, write := range map[string]func(*testing.T, string){"kernel": kernelLayer, "other": otherEncodings} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "layer")
			if err := os.Mkdir(src, 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, src)
			first := packBytes(t, src)
			if again := packBytes(t, src); !bytes.Equal(first, again) {
				t.Fatal("the same layer gave two different tars")
			}
			back := unpackInto(t, first)
			if second := packBytes(t, back); !bytes.Equal(first, second) {
				t.Errorf("layer -> tar -> layer -> tar changed the tar:\nfirst:  %v\nsecond: %v", tarEntries(t, first), tarEntries(t, second))
			}
			entries := tarEntries(t, first)
			want := map[string]bool{"./": true, "etc/.wh.group": true, "opt/a/.wh..wh..opq": true}
			if name == "kernel" {
				want["d2/.wh.g"], want["var/.wh.cache"] = true, true
			} else {
				want["keep/.wh..wh..opq"], want["d2/.wh.h"] = true, true
			}
			for n := range want {
				if entries[n] == nil {
					t.Errorf("tar has no %s; it has %v", n, entries)
				}
			}
			for n, h := range entries {
				for k := range h.PAXRecords {
					if strings.Contains(k, ".overlay.") {
						t.Errorf("%s carries overlay metadata %s", n, k)
					}
				}
			}
			whiteouts := []string{"etc/group"}
			if name == "kernel" {
				whiteouts = append(whiteouts, "d2/g", "var/cache")
				if h := entries["bin/tool-again"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/tool" {
					t.Errorf("bin/tool-again should be a hard link to bin/tool: %+v", h)
				}
				var a, b unix.Stat_t
				if unix.Lstat(filepath.Join(back, "bin/tool"), &a) != nil || unix.Lstat(filepath.Join(back, "etc/tool-link"), &b) != nil || a.Ino != b.Ino {
					t.Error("bin/tool and etc/tool-link are not one file after the round trip")
				}
			} else {
				whiteouts = append(whiteouts, "d2/h")
			}
			for _, w := range whiteouts {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(back, w), &st); err != nil || !layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
					t.Errorf("%s is not a 0/0 whiteout after the round trip (%v, mode %o)", w, err, st.Mode)
				}
			}
			buf := make([]byte, 4)
			if n, err := unix.Lgetxattr(filepath.Join(back, "opt/a"), layer.Trusted.Xattr(layer.KeyOpaque), buf); err != nil || string(buf[:n]) != "y" {
				t.Errorf("opt/a is not opaque after the round trip: %q %v", buf[:n], err)
			}
		})
	}
}

// TestLayerTarMountsTheSame mounts a layer and its round trip through an
// OCI tar over the same lower layer, with kernel overlay and with
// fusefs, and compares the merged trees: the same files, owners, modes,
// times and xattrs, the same names hidden.
func TestLayerTarMountsTheSame(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	lower, orig := filepath.Join(dir, "lower"), filepath.Join(dir, "orig")
	for _, d := range []string{lower, orig} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lowerFixture(t, lower)
	kernelLayer(t, orig)
	back := unpackInto(t, packBytes(t, orig))
	for _, b := range []backend.Backend{native.New(), fusefs.NewBackend()} {
		t.Run(b.Name(), func(t *testing.T) {
			listing := func(top string) []string {
				target := filepath.Join(t.TempDir(), "mnt")
				if err := os.Mkdir(target, 0o755); err != nil {
					t.Fatal(err)
				}
				m, err := b.Mount(context.Background(), layer.Spec{Lowers: []string{top, lower}, Target: target, Namespace: layer.Trusted, ReadOnly: true})
				if err != nil {
					t.Fatalf("mount %s: %v", top, err)
				}
				defer m.Unmount()
				return testutil.FullTreeListing(t, target)
			}
			a, c := listing(orig), listing(back)
			if strings.Join(a, "\n") != strings.Join(c, "\n") {
				t.Errorf("merged trees differ:\noriginal layer:\n%s\nround trip:\n%s", strings.Join(a, "\n"), strings.Join(c, "\n"))
			}
			text := strings.Join(a, "\n")
			for _, gone := range []string{"etc/group ", "var/cache ", "opt/a/1 ", "d2/g "} {
				if strings.Contains(text, gone) {
					t.Errorf("%s shows through its whiteout or opaque directory:\n%s", gone, text)
				}
			}
			for _, kept := range []string{"d2/h ", "keep/k ", "opt/a/3 "} {
				if !strings.Contains(text, kept) {
					t.Errorf("%s is missing from the merged tree:\n%s", kept, text)
				}
			}
		})
	}
}

// hostileTar builds a tar from headers (regular files get body "x").
func hostileTar(t *testing.T, hs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			h.Size = 1
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// TestReadLayerRefusesEscapes: a tar that tries to write outside the
// layer (.. names, through its own symlink, a hard link out) is refused
// with ErrBadLayer and nothing appears outside; overlay xattrs in a tar
// are not set.
func TestReadLayerRefusesEscapes(t *testing.T) {
	cases := map[string][]*tar.Header{
		"dotdot": {{Typeflag: tar.TypeReg, Name: "../escaped"}},
		"through symlink": {
			{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "../outside"},
			{Typeflag: tar.TypeReg, Name: "link/escaped"},
		},
		"absolute symlink": {
			{Typeflag: tar.TypeSymlink, Name: "abs", Linkname: "/"},
			{Typeflag: tar.TypeReg, Name: "abs/escaped"},
		},
		"hard link out":        {{Typeflag: tar.TypeLink, Name: "h", Linkname: "../outside/secret"}},
		"hard link to nothing": {{Typeflag: tar.TypeLink, Name: "h", Linkname: "missing"}},
	}
	for name, hs := range cases {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			outside, dst := filepath.Join(base, "outside"), filepath.Join(base, "layer")
			for _, d := range []string{outside, dst} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := ReadLayer(context.Background(), bytes.NewReader(hostileTar(t, hs...)), dst, layer.Trusted)
			if !errors.Is(err, ErrBadLayer) {
				t.Errorf("err = %v, want ErrBadLayer", err)
			}
			if got := testutil.Names(t, outside); len(got) != 1 {
				t.Errorf("the tar wrote outside the layer: %v", got)
			}
			if _, err := os.Lstat(filepath.Join(base, "escaped")); err == nil {
				t.Error("the tar wrote next to the layer")
			}
		})
	}
	t.Run("overlay xattrs", func(t *testing.T) {
		dst := t.TempDir()
		h := &tar.Header{Typeflag: tar.TypeDir, Name: "d/", PAXRecords: map[string]string{
			paxXattr + "trusted.overlay.redirect": "/etc", paxXattr + "user.overlay.opaque": "y", paxXattr + "user.kept": "k"}}
		if err := ReadLayer(context.Background(), bytes.NewReader(hostileTar(t, h)), dst, layer.Trusted); err != nil {
			t.Fatal(err)
		}
		names := make([]byte, 1024)
		n, _ := unix.Llistxattr(filepath.Join(dst, "d"), names)
		if got := string(names[:n]); strings.Contains(got, "overlay") || !strings.Contains(got, "user.kept") {
			t.Errorf("xattrs of d: %q, want user.kept and no overlay metadata", got)
		}
	})
}

// TestReadBlobChecksDigest: a blob whose bytes do not match its
// descriptor is refused with ErrDigest, even when it unpacks.
func TestReadBlobChecksDigest(t *testing.T) {
	src := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Pack(context.Background(), src, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	read := func(data []byte) error {
		dst := filepath.Join(t.TempDir(), "layer")
		os.Mkdir(dst, 0o755)
		return ReadBlob(context.Background(), bytes.NewReader(data), b.Desc, b.DiffID, dst, layer.NamespaceFor(userns.Privileged()))
	}
	if err := read(data); err != nil {
		t.Fatalf("the blob as packed: %v", err)
	}
	other := filepath.Join(t.TempDir(), "layer")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "f"), []byte("CONTENT"), 0o644) // same size, other bytes
	ob, err := Pack(context.Background(), other, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	odata, _ := os.ReadFile(ob.Path)
	for name, bad := range map[string][]byte{
		"flipped byte":   append(append([]byte(nil), data[:len(data)/2]...), append([]byte{data[len(data)/2] ^ 0xff}, data[len(data)/2+1:]...)...),
		"truncated":      data[:len(data)-5],
		"another layer":  odata,
		"trailing bytes": append(append([]byte(nil), data...), 0),
	} {
		if err := read(bad); !errors.Is(err, ErrDigest) {
			t.Errorf("%s: err = %v, want ErrDigest", name, err)
		}
	}
}

// TestLayerTarRoundTripUnprivileged: an ordinary user's layer (0/0
// whiteouts, user.overlay.opaque, files of its own) goes to a tar, its
// own uid written as 0 (the container saw it as root), and back to the
// same tar, its opaque directory marked in the user namespace.
func TestLayerTarRoundTripUnprivileged(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t)
		return
	}
	src := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	f := fixture{t, src}
	f.dir("etc", 0o755)
	f.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)
	f.whiteout("etc/group")
	f.dir("opt/a", 0o750)
	f.xattr("opt/a", layer.User.Xattr(layer.KeyOpaque), "y")
	f.file("opt/a/3", "three\n", 0o600)
	f.times()
	first := packBytes(t, src)
	entries := tarEntries(t, first)
	for _, n := range []string{"./", "etc/passwd", "etc/.wh.group", "opt/a/.wh..wh..opq"} {
		if h := entries[n]; h == nil || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %+v; want an entry owned by 0:0", n, h)
		}
	}
	back := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(back, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ReadLayer(context.Background(), bytes.NewReader(first), back, layer.User); err != nil {
		t.Fatal(err)
	}
	if second := packBytes(t, back); !bytes.Equal(first, second) {
		t.Errorf("the round trip changed the tar:\nfirst:  %v\nsecond: %v", entries, tarEntries(t, second))
	}
	buf := make([]byte, 4)
	if n, err := unix.Lgetxattr(filepath.Join(back, "opt/a"), layer.User.Xattr(layer.KeyOpaque), buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opt/a is not opaque in the user namespace after the round trip: %q %v", buf[:n], err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(back, "etc/group"), &st); err != nil || !layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
		t.Errorf("etc/group is not a 0/0 whiteout after the round trip: %v", err)
	}
}

// TestWriteLayerRefusesWhNames: a kernel-format layer holding an
// ordinary file named ".wh.x" (a kernel overlay mount shows it as a
// file) cannot become an OCI tar layer, where it would read back as a
// whiteout of x: WriteLayer refuses it, naming it.
func TestWriteLayerRefusesWhNames(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".wh.x"), []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteLayer(context.Background(), dir, io.Discard)
	if !errors.Is(err, ErrUnexportable) || !strings.Contains(err.Error(), ".wh.x") {
		t.Errorf("WriteLayer of a layer with a .wh.x file: %v; want ErrUnexportable naming it", err)
	}
}
