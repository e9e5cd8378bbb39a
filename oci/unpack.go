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
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// ErrBadLayer reports a layer tar that cannot be a layer: an entry
// outside the layer, through a symlink, of an unknown type, a hard link
// to nothing. Test with errors.Is.
var ErrBadLayer = errors.New("bad layer tar")

// ReadLayer unpacks the OCI layer tar r (uncompressed) into dst, an
// existing empty directory, in the kernel's layer format: ".wh.NAME"
// becomes a 0/0 whiteout (layer.MakeWhiteout), ".wh..wh..opq" makes its
// directory opaque with overlay.opaque in ns (layer.MakeOpaque), the
// entry "./" gives dst its metadata. Owners are set where the caller
// may (root); xattrs where allowed, overlay metadata never (a tar must
// not forge a redirect or an opaque mark). Every path is resolved
// beneath dst without following a symlink, so a hostile tar writes
// nothing outside dst; it gets an error wrapping ErrBadLayer. On error
// dst is partly written: the caller discards it.
func ReadLayer(ctx context.Context, r io.Reader, dst string, ns layer.Namespace) error {
	root, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dst, Err: err}
	}
	u := &unpacker{ctx: ctx, dst: dst, root: root, ns: ns, asRoot: os.Geteuid() == 0, cached: -1}
	defer u.close()
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(h, tr); err != nil {
			return fmt.Errorf("unpack %q into %s: %w", h.Name, dst, err)
		}
	}
	return u.finish()
}

// unpacker writes one layer for ReadLayer.
type unpacker struct {
	ctx    context.Context
	dst    string
	root   int // dst, open
	ns     layer.Namespace
	asRoot bool
	dirs   []dirMeta
	// The directory last opened, kept open: a tar lists a directory's
	// entries together. Dropped whenever something is removed.
	cachedRel string
	cached    int
}

// dirMeta is what a directory gets once its entries are written: a
// read-only mode would refuse them, and they change its time.
type dirMeta struct {
	rel   string
	mode  uint32
	mtime time.Time
}

func (u *unpacker) close() {
	u.drop()
	unix.Close(u.root)
}

func (u *unpacker) drop() {
	if u.cached >= 0 {
		unix.Close(u.cached)
	}
	u.cached, u.cachedRel = -1, ""
}

// cleanName turns a tar name into a path relative to the layer ("" for
// its root), refusing one that leaves it.
func cleanName(name string) (string, error) {
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q leaves the layer", ErrBadLayer, name)
		}
	}
	rel := strings.Trim(path.Clean("/"+name), "/")
	return rel, nil
}

// openDir opens the layer directory rel beneath dst, following no
// symlink; the descriptor belongs to u (do not close it).
func (u *unpacker) openDir(rel string) (int, error) {
	if u.cached >= 0 && u.cachedRel == rel {
		return u.cached, nil
	}
	name := rel
	if name == "" {
		name = "."
	}
	fd, err := unix.Openat2(u.root, name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if errors.Is(err, unix.ENOENT) && rel != "" {
		// Tars may leave parent directories out.
		pfd, err := u.openDir(parentOf(rel))
		if err != nil {
			return -1, err
		}
		if err := unix.Mkdirat(pfd, path.Base(rel), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, &os.PathError{Op: "mkdir", Path: filepath.Join(u.dst, rel), Err: err}
		}
		return u.openDir(rel)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("%w: /%s is not a directory of the layer (a symlink or a file)", ErrBadLayer, rel)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: filepath.Join(u.dst, rel), Err: err}
	}
	u.drop()
	u.cached, u.cachedRel = fd, rel
	return fd, nil
}

func parentOf(rel string) string {
	if d := path.Dir(rel); d != "." {
		return d
	}
	return ""
}

// entry writes one tar entry.
func (u *unpacker) entry(h *tar.Header, body io.Reader) error {
	rel, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		if h.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the layer's root is not a directory", ErrBadLayer)
		}
		return u.meta(u.root, "", "", h)
	}
	base := path.Base(rel)
	pfd, err := u.openDir(parentOf(rel))
	if err != nil {
		return err
	}
	if strings.HasPrefix(base, layer.WhiteoutPrefix) {
		return u.marker(pfd, base)
	}
	isDir := h.Typeflag == tar.TypeDir
	opaque, err := u.clear(pfd, rel, isDir)
	if err != nil {
		return err
	}
	if u.cached < 0 { // clear removed something: open the parent again
		if pfd, err = u.openDir(parentOf(rel)); err != nil {
			return err
		}
	}
	mode := uint32(h.Mode & 0o7777)
	switch h.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if opaque {
			// ".wh.NAME" and NAME/ in one layer: the directory
			// below is gone, this one replaces it.
			if err := layer.MakeOpaque(fd, u.ns); err != nil {
				return err
			}
		}
		return u.meta(fd, "", rel, h)
	case tar.TypeReg:
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), filepath.Join(u.dst, rel))
		defer f.Close()
		if _, err := io.Copy(f, body); err != nil {
			return err
		}
		return u.meta(fd, "", rel, h)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return err
		}
	case tar.TypeLink:
		target, err := cleanName(h.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("%w: hard link to %q", ErrBadLayer, h.Linkname)
		}
		tfd, err := u.openDir(parentOf(target))
		if err != nil {
			return err
		}
		tfd, err = unix.Dup(tfd) // the next openDir may close it
		if err != nil {
			return err
		}
		defer unix.Close(tfd)
		if pfd, err = u.openDir(parentOf(rel)); err != nil {
			return err
		}
		if err := unix.Linkat(tfd, path.Base(target), pfd, base, 0); err != nil {
			return fmt.Errorf("%w: hard link to %q, which the tar must hold before it: %v", ErrBadLayer, h.Linkname, err)
		}
		return nil // a hard link has its target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
		if err := unix.Mknodat(pfd, base, kind|mode, dev); err != nil {
			if errors.Is(err, unix.EPERM) && h.Typeflag != tar.TypeFifo {
				slog.Debug("oci: cannot create a device node, left out", "path", rel, "err", err)
				return nil
			}
			return err
		}
	default:
		return fmt.Errorf("%w: entry type %q is not supported", ErrBadLayer, h.Typeflag)
	}
	return u.meta(-1, fdPath(pfd, base), rel, h)
}

// marker applies an OCI marker file: a whiteout or an opaque marker.
func (u *unpacker) marker(pfd int, base string) error {
	switch {
	case base == layer.OpaqueMarker:
		return layer.MakeOpaque(pfd, u.ns)
	case strings.HasPrefix(base, layer.WhiteoutPrefix+layer.WhiteoutPrefix):
		return nil // AUFS bookkeeping: no meaning in a layer
	}
	target := strings.TrimPrefix(base, layer.WhiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return fmt.Errorf("%w: whiteout %q", ErrBadLayer, base)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, target, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil // the layer's own entry of that name already hides what is below
	}
	return layer.MakeWhiteout(pfd, target, u.ns)
}

// clear makes room for the entry rel (base name of pfd): a later entry
// of a tar replaces an earlier one, but a directory merges with one. It
// reports whether rel was a whiteout that a directory now replaces.
func (u *unpacker) clear(pfd int, rel string, isDir bool) (opaque bool, err error) {
	base := path.Base(rel)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	if isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false, nil
	}
	// A whiteout here is one this unpacker made (MakeWhiteout: a 0/0
	// device, or an xattr whiteout where devices cannot be made).
	kind, _ := layer.Classify(pfd, base, &st, layer.HasXattrWhiteouts, u.ns)
	opaque = isDir && kind == layer.Whiteout
	u.drop()
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return opaque, layer.RemoveAll(filepath.Join(u.dst, rel))
	}
	return opaque, unix.Unlinkat(pfd, base, 0)
}

// meta gives a new entry its owner, xattrs, mode and time: through fd
// when it is open (fd >= 0), else through the path p (a symlink or a
// node). Directories get mode and time at the end (finish).
func (u *unpacker) meta(fd int, p, rel string, h *tar.Header) error {
	if u.asRoot {
		var err error
		if fd >= 0 {
			err = unix.Fchown(fd, h.Uid, h.Gid)
		} else {
			err = unix.Lchown(p, h.Uid, h.Gid)
		}
		if err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("chown: %w", err)
		}
	}
	names := make([]string, 0, len(h.PAXRecords))
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, paxXattr) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		name := strings.TrimPrefix(k, paxXattr)
		if layer.IsOverlayXattr(name) {
			continue
		}
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, name, []byte(h.PAXRecords[k]), 0)
		} else {
			err = unix.Lsetxattr(p, name, []byte(h.PAXRecords[k]), 0)
		}
		if err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EACCES) {
				slog.Debug("oci: xattr not set", "path", rel, "name", name, "err", err)
				continue
			}
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	mode := uint32(h.Mode & 0o7777)
	if h.Typeflag == tar.TypeDir {
		u.dirs = append(u.dirs, dirMeta{rel: rel, mode: mode, mtime: h.ModTime})
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
	if fd >= 0 {
		if err := unix.Fchmod(fd, mode); err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, selfFd(fd), ts, 0)
	}
	if h.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
			return err
		}
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// finish gives directories their mode and time, deepest first.
func (u *unpacker) finish() error {
	u.drop()
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		fd := u.root
		if d.rel != "" {
			var err error
			fd, err = unix.Openat2(u.root, d.rel, &unix.OpenHow{
				Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
			})
			if errors.Is(err, unix.ENOENT) {
				continue // replaced by a later entry
			}
			if err != nil {
				return &os.PathError{Op: "open", Path: filepath.Join(u.dst, d.rel), Err: err}
			}
		}
		ts := unix.NsecToTimespec(d.mtime.UnixNano())
		err := unix.Fchmod(fd, d.mode)
		if err == nil {
			err = unix.UtimesNanoAt(unix.AT_FDCWD, selfFd(fd), []unix.Timespec{ts, ts}, 0)
		}
		if fd != u.root {
			unix.Close(fd)
		}
		if err != nil {
			return &os.PathError{Op: "chmod", Path: filepath.Join(u.dst, d.rel), Err: err}
		}
	}
	return nil
}

// selfFd names the file open at fd, for utimensat (which has no form
// taking only a descriptor in Go's unix package).
func selfFd(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }
