package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// paxXattr prefixes the PAX records that carry xattrs (GNU tar, bsdtar,
// containers/storage and Go's archive/tar all read it).
const paxXattr = "SCHILY.xattr."

// rootEntry is the tar name of the layer's own root directory.
const rootEntry = "./"

// ErrUnexportable reports a layer that no OCI tar layer can carry: an
// ordinary file whose name starts with ".wh.", which every reader of the
// tar would take for a whiteout. Test with errors.Is.
var ErrUnexportable = errors.New("layer cannot be written as an OCI layer")

// WriteLayer writes the layer directory dir to w as an OCI layer tar
// (uncompressed): whiteouts as ".wh.NAME", opaque directories with a
// ".wh..wh..opq" entry, everything else with its owner, mode,
// modification time (nanoseconds), xattrs (overlay metadata left out)
// and hard links within the layer. Entries come in name order with no
// host-dependent field, so the same layer always gives the same bytes.
// Sockets, which a tar cannot hold, are left out (logged with --debug).
//
// Owners are written as the files have them; an ordinary user's own
// uid and gid are written as 0, the ids the container saw them as.
func WriteLayer(ctx context.Context, dir string, w io.Writer) error {
	lw := &layerWriter{ctx: ctx, tw: tar.NewWriter(w), links: map[devIno]string{},
		uid: os.Geteuid(), gid: os.Getegid()}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: dir, Err: err}
	}
	if lw.reader.Format, err = layer.ReadFormat(fd); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	h, err := lw.header(fdPath(fd, "."), rootEntry, &st)
	if err != nil {
		return err
	}
	if err := lw.tw.WriteHeader(h); err != nil {
		return err
	}
	if err := lw.dir(fd, dir, ""); err != nil {
		return err
	}
	return lw.tw.Close()
}

// devIno identifies a file, to write its second name as a hard link.
type devIno struct{ dev, ino uint64 }

// layerWriter walks one layer for WriteLayer.
type layerWriter struct {
	ctx      context.Context
	tw       *tar.Writer
	links    map[devIno]string // a file with more links -> its first tar name
	uid, gid int               // the caller's ids, written as 0 when not root
	reader   layer.Reader      // of the layer's format (layer.ReadFormat)
}

// tarEntry is one entry of a layer directory as it goes into the tar.
type tarEntry struct {
	name string // the tar base name: the entry's, or ".wh." + the name a whiteout hides
	e    layer.Entry
}

// dir writes the entries of the layer directory open at fd (abs for
// messages), whose tar name is rel ("" for the root), in name order.
func (lw *layerWriter) dir(fd int, abs, rel string) error {
	entries, op, err := lw.reader.ReadDir(fd)
	if err != nil {
		return fmt.Errorf("read layer directory %s: %w", abs, err)
	}
	if op == layer.OpaqueDir {
		if err := lw.marker(rel + layer.OpaqueMarker); err != nil {
			return err
		}
	}
	var out []tarEntry
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name
		switch e.Kind {
		case layer.Opaque, layer.Meta:
			continue
		case layer.Whiteout:
			name = layer.WhiteoutPrefix + e.Target
		default:
			if strings.HasPrefix(name, layer.WhiteoutPrefix) {
				// An ordinary name in the kernel's format; in a tar layer
				// every reader would take it for a whiteout.
				return fmt.Errorf("%s: %w: the name %q starts with %q, which the OCI format reads as a whiteout; rename it in the step that makes it", abs, ErrUnexportable, name, layer.WhiteoutPrefix)
			}
		}
		if seen[name] { // a whiteout of a name the directory also holds
			continue
		}
		seen[name] = true
		out = append(out, tarEntry{name: name, e: e})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	for _, te := range out {
		if err := lw.ctx.Err(); err != nil {
			return err
		}
		if te.e.Kind == layer.Whiteout {
			if err := lw.marker(rel + te.name); err != nil {
				return err
			}
			continue
		}
		if err := lw.entry(fd, path.Join(abs, te.name), rel+te.name, te.name); err != nil {
			return err
		}
	}
	return nil
}

// marker writes an empty OCI marker file (a whiteout or an opaque
// marker): no owner, mode 0, time 0, so that it never varies.
func (lw *layerWriter) marker(name string) error {
	return lw.tw.WriteHeader(&tar.Header{Format: tar.FormatPAX, Typeflag: tar.TypeReg, Name: name, ModTime: time.Unix(0, 0)})
}

// entry writes entry name of the directory open at dirfd, tar name rel,
// and what it holds if it is a directory.
func (lw *layerWriter) entry(dirfd int, abs, rel, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: abs, Err: err}
	}
	kind := st.Mode & unix.S_IFMT
	if kind == unix.S_IFSOCK {
		slog.Debug("oci: a socket cannot go into a tar, left out", "path", abs)
		return nil
	}
	if kind == unix.S_IFDIR {
		rel += "/"
	}
	if kind != unix.S_IFDIR && st.Nlink > 1 {
		id := devIno{uint64(st.Dev), st.Ino}
		if first, ok := lw.links[id]; ok {
			return lw.tw.WriteHeader(&tar.Header{Format: tar.FormatPAX, Typeflag: tar.TypeLink, Name: rel, Linkname: first, ModTime: time.Unix(0, 0)})
		}
		lw.links[id] = rel
	}
	h, err := lw.header(fdPath(dirfd, name), rel, &st)
	if err != nil {
		return err
	}
	switch kind {
	case unix.S_IFLNK:
		if h.Linkname, err = readlinkat(dirfd, name); err != nil {
			return &os.PathError{Op: "readlink", Path: abs, Err: err}
		}
	case unix.S_IFREG:
		h.Size = st.Size
	}
	if err := lw.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", abs, err)
	}
	switch kind {
	case unix.S_IFREG:
		return lw.content(dirfd, abs, name, st.Size)
	case unix.S_IFDIR:
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: abs, Err: err}
		}
		defer unix.Close(fd)
		return lw.dir(fd, abs, rel)
	}
	return nil
}

// content copies the regular file name of dirfd into the tar.
func (lw *layerWriter) content(dirfd int, abs, name string, size int64) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: abs, Err: err}
	}
	f := os.NewFile(uintptr(fd), abs)
	defer f.Close()
	n, err := io.Copy(lw.tw, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("read %s: %w", abs, err)
	}
	if n != size {
		return fmt.Errorf("read %s: %d bytes, its size is %d (was the layer changed?)", abs, n, size)
	}
	return nil
}

// header is the tar header of the file p (a /proc/self/fd path; st its
// lstat) named rel: type, mode, owner, time and xattrs.
func (lw *layerWriter) header(p, rel string, st *unix.Stat_t) (*tar.Header, error) {
	h := &tar.Header{
		Format:  tar.FormatPAX,
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
	}
	if lw.uid != 0 {
		if h.Uid == lw.uid {
			h.Uid = 0
		}
		if h.Gid == lw.gid {
			h.Gid = 0
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		h.Typeflag = tar.TypeReg
	case unix.S_IFDIR:
		h.Typeflag = tar.TypeDir
	case unix.S_IFLNK:
		h.Typeflag = tar.TypeSymlink
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("%s: file type %o cannot go into a tar", p, st.Mode&unix.S_IFMT)
	}
	xattrs, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	for name, v := range xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattr+name] = v
	}
	return h, nil
}

// readXattrs returns the xattrs of p (not following a symlink) but
// overlay metadata.
func readXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" || layer.IsOverlayXattr(name) {
			continue
		}
		v, err := getXattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: p, Err: err}
		}
		out[name] = string(v)
	}
	return out, nil
}

func getXattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// fdPath names entry name of the directory open at dirfd for the
// path-only calls (xattrs of a symlink); "." names the directory.
func fdPath(dirfd int, name string) string {
	return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
}
