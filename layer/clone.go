package layer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CloneStats counts what CloneTree did with the regular files of a tree.
type CloneStats struct {
	Linked int // regular files hard-linked to the source
	Copied int // regular files copied because link(2) was refused
}

// CloneTree makes dst, which must not exist, a copy of the plain
// directory tree src that shares src's regular files: directories are
// recreated with their mode, owner (where the caller may chown), times
// and xattrs; symlinks, devices, fifos and sockets are recreated; regular
// files are link(2)ed, so the clone costs a directory walk, not a copy
// of the data. A file link(2) refuses with EPERM or EACCES (the kernel's
// protected_hardlinks, for an ordinary user and a file they do not own)
// is copied instead.
//
// The clone and src then share inodes: writing into a regular file of
// one changes the other. Flatten never does that to the tree it merges
// into (it replaces a file instead of writing into it), so it may apply
// layers onto a clone: that is how a child container's root is made from
// its parent's without copying the parent. Nothing else may write into
// a clone's files in place.
//
// src and dst must be on one filesystem: CloneTree returns an error that
// errors.Is(err, unix.EXDEV) before creating anything when they are not,
// so the caller can fall back to Flatten. On any error dst may be partly
// written; the caller removes it.
func CloneTree(ctx context.Context, src, dst string) (CloneStats, error) {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return CloneStats{}, &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return CloneStats{}, &SpecError{Field: "clone source", Path: src, Err: ErrNotDir, Hint: "give the directory tree to clone"}
	}
	var parent unix.Stat_t
	if err := unix.Stat(filepath.Dir(dst), &parent); err != nil {
		return CloneStats{}, &os.PathError{Op: "stat", Path: filepath.Dir(dst), Err: err}
	}
	if parent.Dev != st.Dev {
		return CloneStats{}, fmt.Errorf("clone %s to %s: %w", src, dst, &os.LinkError{Op: "link", Old: src, New: dst, Err: unix.EXDEV})
	}
	c := &cloner{copier: newCopier(ctx)}
	if err := c.clone(src, dst, &st); err != nil {
		return c.stats, fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	return c.stats, nil
}

// cloner walks one tree for CloneTree; its copier copies what cannot be
// linked, keeping hard links among the copies.
type cloner struct {
	*copier
	stats CloneStats
}

// clone puts a clone of src (lstat st) at dst, which does not exist.
func (c *cloner) clone(src, dst string, st *unix.Stat_t) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		entries, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return err
		}
		for _, e := range entries {
			s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
			if e.Type().IsRegular() {
				// The entry's type is enough to link it: no lstat.
				if err := c.link(s, d); err != nil {
					return err
				}
				continue
			}
			var cst unix.Stat_t
			if err := unix.Lstat(s, &cst); err != nil {
				return &os.PathError{Op: "lstat", Path: s, Err: err}
			}
			if err := c.clone(s, d, &cst); err != nil {
				return err
			}
		}
		// Metadata last: the entries made above would change the times,
		// and a read-only mode would refuse them.
		return copyMeta(src, dst, st)
	case unix.S_IFREG:
		return c.link(src, dst)
	default:
		return c.copyNonDir(src, dst, st)
	}
}

// link makes dst a hard link to the regular file src, or a copy of it
// when link(2) is refused for want of permission.
func (c *cloner) link(src, dst string) error {
	err := unix.Link(src, dst)
	if err == nil {
		c.stats.Linked++
		return nil
	}
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		return &os.LinkError{Op: "link", Old: src, New: dst, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	c.stats.Copied++
	return c.copyNonDir(src, dst, &st)
}
