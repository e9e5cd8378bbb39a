package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Flatten applies lowers (top first, as in Spec) bottom-up into the plain
// directory dst, so that dst shows what a union of them shows: whiteouts
// delete, opaque directories replace what is below, everything else is
// copied over. It preserves mode, owner (where the caller may chown),
// times, symlinks, hard links within a layer, xattrs (except overlay
// metadata) and devices, fifos and sockets (where the caller may mknod).
// dst is created if missing; what it already holds is merged with, as if
// it were the bottom layer. Flatten never writes into a non-directory dst
// already holds, its data or its metadata: a layer's file (even one that
// only changes a mode or an xattr, which a layer holds as a whole copy)
// replaces it, removed first and created anew (O_EXCL). So dst may share
// its regular files with another tree by hard links (CloneTree) and that
// tree stays as it was. On error dst may be partly written.
func Flatten(ctx context.Context, lowers []string, dst string) error {
	if len(lowers) == 0 {
		return &SpecError{Field: "lower", Err: ErrIncomplete, Hint: "give at least one layer to flatten"}
	}
	for i, l := range lowers {
		if err := isDir(l); err != nil {
			return &SpecError{Field: fmt.Sprintf("lower[%d]", i), Path: l, Err: err, Hint: "create it first, or fix the path"}
		}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("flatten into %s: %w", dst, err)
	}
	roots, err := Roots(lowers)
	if err != nil {
		return err
	}
	for i := len(roots) - 1; i >= 0; i-- {
		c := newCopier(ctx)
		if err := c.applyDir(roots[i], dst); err != nil {
			return fmt.Errorf("flatten %s into %s: %w", lowers[i], dst, err)
		}
	}
	return nil
}

// devIno identifies a file, to recreate hard links.
type devIno struct{ dev, ino uint64 }

// copier copies one tree, remembering the files it has copied that have
// more than one link so that their other names become links again.
type copier struct {
	ctx   context.Context
	links map[devIno]string // source file -> its first copy
}

func newCopier(ctx context.Context) *copier {
	return &copier{ctx: ctx, links: map[devIno]string{}}
}

// applyDir applies the layer directory src onto the existing directory
// dst: whiteouts remove, an opaque src empties dst first, entries are
// copied or merged.
func (c *copier) applyDir(src DirPath, dst string) error {
	fd, err := unix.Open(src.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: src.Path, Err: err}
	}
	entries, op, err := Reader{Format: src.Format}.ReadDir(fd)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("read layer directory %s: %w", src.Path, err)
	}
	if op == OpaqueDir {
		if err := emptyDir(dst); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		switch e.Kind {
		case Opaque, Meta:
			continue
		case Whiteout:
			if err := os.RemoveAll(filepath.Join(dst, e.Target)); err != nil {
				return err
			}
			continue
		}
		if err := c.applyEntry(src.Child(e.Name), filepath.Join(dst, e.Name)); err != nil {
			return err
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(src.Path, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src.Path, Err: err}
	}
	return copyMeta(src.Path, dst, &st)
}

// applyEntry puts the layer entry src at dst, merging directories and
// replacing anything else.
func (c *copier) applyEntry(src DirPath, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src.Path, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src.Path, Err: err}
	}
	var dt unix.Stat_t
	dstErr := unix.Lstat(dst, &dt)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if dstErr == nil && dt.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := os.Remove(dst); err != nil {
				return err
			}
			dstErr = unix.ENOENT
		}
		if dstErr != nil {
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
		}
		return c.applyDir(src, dst)
	}
	if dstErr == nil {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
	}
	return c.copyNonDir(src.Path, dst, &st)
}

// copyTree copies the plain directory tree src to dst, which must not
// exist. Whiteout markers in src are copied as they are.
func (c *copier) copyTree(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return c.copyNonDir(src, dst, &st)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	names, err := readNames(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := c.copyTree(filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
			return err
		}
	}
	return copyMeta(src, dst, &st)
}

// copyNonDir creates dst as a copy of the non-directory src (lstat st),
// with its metadata: a hard link to an earlier copy of the same file,
// a copied regular file, a symlink, or a device, fifo or socket node.
func (c *copier) copyNonDir(src, dst string, st *unix.Stat_t) error {
	key := devIno{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if first, ok := c.links[key]; ok {
			if err := os.Link(first, dst); err == nil {
				return nil
			}
			// The first copy is gone or elsewhere: copy again.
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if err := copyContent(src, dst); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default: // devices, fifos, sockets
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			if errors.Is(err, unix.EPERM) {
				slog.Debug("flatten: cannot create device node, skipped", "path", dst, "err", err)
				return nil
			}
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	}
	if st.Nlink > 1 {
		c.links[key] = dst
	}
	return copyMeta(src, dst, st)
}

// copyContent copies the regular file src to the new file dst; the
// kernel copies the data (copy_file_range) where it can.
func copyContent(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// copyMeta gives dst the owner, mode, xattrs and times of src (lstat st).
// Owner and xattrs are best effort: an unprivileged caller keeps its own
// uid, and a filesystem without xattrs keeps none.
func copyMeta(src, dst string, st *unix.Stat_t) error {
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	if !isLink {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

// copyXattrs copies the xattrs of src to dst, except overlay metadata and
// those the caller may not set.
func copyXattrs(src, dst string) error {
	names, err := ListXattrs(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		if IsOverlayXattr(n) {
			continue
		}
		v, err := GetXattr(src, n)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, n, v, 0); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EACCES) {
				slog.Debug("xattr not copied", "path", dst, "name", n, "err", err)
				continue
			}
			return &os.PathError{Op: "setxattr " + n, Path: dst, Err: err}
		}
	}
	return nil
}

// readNames lists the entry names of directory p.
func readNames(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// emptyDir removes everything inside directory p, keeping p.
func emptyDir(p string) error {
	names, err := readNames(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := RemoveAll(filepath.Join(p, n)); err != nil {
			return err
		}
	}
	return nil
}

// RemoveAll is os.RemoveAll that also removes read-only directories the
// caller owns (sealed layers and copied containers have many), by making
// them writable first.
func RemoveAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return err
	}
	filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if fi, err := d.Info(); err == nil {
				os.Chmod(q, fi.Mode().Perm()|0o700)
			}
		}
		return nil
	})
	return os.RemoveAll(p)
}

// EmptyDir removes everything inside the directory p and keeps p itself:
// what a copy backend does to its target when a run is over.
func EmptyDir(p string) error { return emptyDir(p) }

// CopyMetadata gives dst the owner (where allowed), mode, xattrs (except
// overlay metadata) and times of src, as Flatten does for every file.
func CopyMetadata(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	return copyMeta(src, dst, &st)
}
