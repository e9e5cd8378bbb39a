package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

var _ = (fs.NodeRenamer)((*node)(nil))

// Rename moves name of d to newName of newParent, as kernel overlayfs
// without redirect_dir does: a directory that exists in a lower layer
// cannot move (EXDEV, and tools such as mv fall back to copying); a
// moved name that a lower layer also has leaves a whiteout; a directory
// moved where a lower layer has the name, or into a merged directory,
// becomes opaque (Linux: fs/overlayfs/dir.c:ovl_rename sets opaque on an
// upper directory whose new parent is merged).
func (d *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	return toErrno(d.rename(name, np, newName, flags))
}

func (d *node) rename(name string, np *node, newName string, flags uint32) (err error) {
	u := d.u
	if !u.writable {
		return syscall.EROFS
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	u.renamMu.Lock()
	defer u.renamMu.Unlock()

	src, err := d.lookupChild(name, false)
	if err != nil {
		return err
	}
	src.closeFds(u)
	if src.kind != layer.HitNonDir && src.kind != layer.HitDir {
		return syscall.ENOENT
	}
	if src.kind == layer.HitDir && (len(src.layers) > 1 || !u.isUpper(src.layers[0])) {
		// Linux: fs/overlayfs/dir.c:ovl_rename without redirect_dir.
		return syscall.EXDEV
	}
	dst, err := np.lookupChild(newName, false)
	if err != nil {
		return err
	}
	dst.closeFds(u)
	dstExists := dst.kind == layer.HitNonDir || dst.kind == layer.HitDir
	if flags&unix.RENAME_NOREPLACE != 0 && dstExists {
		return syscall.EEXIST
	}
	// Listings of both directories are stale from here on, whatever
	// happens.
	defer d.dirChanged()
	defer np.dirChanged()
	if flags&unix.RENAME_EXCHANGE != 0 {
		return d.exchange(name, &src, np, newName, &dst)
	}
	if dst.kind == layer.HitNonDir && u.isUpper(dst.layers[0]) {
		defer func() {
			if err == nil {
				u.forgetOrigin(&dst.st) // a name of the replaced file went
			}
		}()
	}
	if dst.kind == layer.HitDir && (len(dst.layers) > 1 || !u.isUpper(dst.layers[0])) && src.kind == layer.HitDir {
		// Replacing a merged directory: it must be empty, and is
		// replaced by an opaque one.
		if ci := np.GetChild(newName); ci != nil {
			if list, err := ci.Operations().(*node).mergedList(true); err != nil {
				return err
			} else if len(list) > 0 {
				return syscall.ENOTEMPTY
			}
		}
	}

	// Everything involved moves to the upper first.
	if ci := d.GetChild(name); ci != nil {
		if err := ci.Operations().(*node).copyUpInDirOp(false); err != nil {
			return err
		}
	} else {
		return syscall.ESTALE
	}
	if err := np.copyUp(false); err != nil {
		return err
	}
	oldLower, err := d.lookupChild(name, true)
	if err != nil {
		return err
	}
	oldLower.closeFds(u)
	newLower, err := np.lookupChild(newName, true)
	if err != nil {
		return err
	}
	newLower.closeFds(u)

	oldUp, newUp, err := upperDirs(d, np)
	if err != nil {
		return err
	}
	defer oldUp.release()
	defer newUp.release()
	if d != np {
		if err := u.impureFor(newUp.fd, oldUp.fd, name); err != nil {
			return err
		}
	}

	if src.kind == layer.HitDir && (newLower.kind == layer.HitDir || np.merged()) {
		if err := u.makeOpaque(oldUp.fd, name); err != nil {
			return err
		}
	}
	// The target's upper side: a whiteout or a directory of whiteouts
	// must go before rename(2) can put something there.
	var tst unix.Stat_t
	if unix.Fstatat(newUp.fd, newName, &tst, unix.AT_SYMLINK_NOFOLLOW) == nil {
		switch {
		case dst.kind == layer.HitWhiteout && src.kind == layer.HitDir:
			if err := unix.Unlinkat(newUp.fd, newName, 0); err != nil {
				return err
			}
		case dst.kind == layer.HitDir:
			if err := u.clearWhiteouts(newUp.fd, newName); err != nil {
				return err
			}
		}
	}
	if err := np.keepReplaced(newName, &dst, newUp.fd); err != nil {
		return err
	}
	oldLowerPositive := oldLower.kind == layer.HitNonDir || oldLower.kind == layer.HitDir
	if oldLowerPositive {
		if u.wr.Whiteouts == layer.DeviceWhiteouts {
			// RENAME_WHITEOUT leaves a 0/0 device behind.
			err := unix.Renameat2(oldUp.fd, name, newUp.fd, newName, unix.RENAME_WHITEOUT)
			if err == nil {
				return nil
			}
			if err != unix.EINVAL && err != unix.EPERM {
				return err
			}
		}
		// No RENAME_WHITEOUT here: move, then write the whiteout.
		if err := unix.Renameat(oldUp.fd, name, newUp.fd, newName); err != nil {
			return err
		}
		_, err = u.whiteoutEntry(oldUp.fd, name, false, false)
		return err
	}
	return unix.Renameat(oldUp.fd, name, newUp.fd, newName)
}

// keepReplaced keeps the data of a regular file that a rename is about
// to replace readable for descriptors still open on it: an upper file
// gets a second link in the work dir (dropped when the kernel forgets
// it), a lower one stays where it is.
func (d *node) keepReplaced(name string, h *layerHit, updir int) error {
	if h.kind != layer.HitNonDir || h.st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	ci := d.GetChild(name)
	if ci == nil {
		return nil
	}
	child := ci.Operations().(*node)
	if !d.u.isUpper(h.layers[0]) {
		child.mu.Lock()
		child.orphan, child.orphanLayer = child.Path(nil), h.layers[0]
		child.mu.Unlock()
		return nil
	}
	if h.st.Nlink != 1 {
		return nil
	}
	tmp := d.u.tmpName()
	if err := unix.Linkat(updir, name, d.u.workFd, tmp, 0); err != nil {
		return err
	}
	child.setOrphan(tmp)
	return nil
}

// merged reports whether directory d merges an upper with lower layers.
func (d *node) merged() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.layers) > 1
}

// upperDirs opens the upper directories of a rename's source and target
// parents, both already copied up; the caller releases both.
func upperDirs(d, np *node) (oldUp, newUp fdRef, err error) {
	if oldUp, err = d.dirFd(0); err != nil {
		return oldUp, newUp, err
	}
	if newUp, err = np.dirFd(0); err != nil {
		oldUp.release()
	}
	return oldUp, newUp, err
}

// exchange swaps two names (RENAME_EXCHANGE). Both are copied up first;
// a directory that exists in a lower layer cannot move (EXDEV); a
// directory that lands where a lower layer has a directory is made
// opaque. Neither name needs a whiteout: both stay occupied.
func (d *node) exchange(name string, src *layerHit, np *node, newName string, dst *layerHit) error {
	u := d.u
	if dst.kind != layer.HitNonDir && dst.kind != layer.HitDir {
		return syscall.ENOENT
	}
	for _, h := range []*layerHit{src, dst} {
		if h.kind == layer.HitDir && (len(h.layers) != 1 || !u.isUpper(h.layers[0])) {
			return syscall.EXDEV
		}
	}
	for _, c := range []struct {
		p    *node
		name string
	}{{d, name}, {np, newName}} {
		ci := c.p.GetChild(c.name)
		if ci == nil {
			return syscall.ESTALE
		}
		if err := ci.Operations().(*node).copyUpInDirOp(false); err != nil {
			return err
		}
	}
	oldUp, newUp, err := upperDirs(d, np)
	if err != nil {
		return err
	}
	defer oldUp.release()
	defer newUp.release()
	if d != np {
		if err := u.impureFor(newUp.fd, oldUp.fd, name); err != nil {
			return err
		}
		if err := u.impureFor(oldUp.fd, newUp.fd, newName); err != nil {
			return err
		}
	}
	// A directory arriving where a lower layer has a directory must hide
	// it; one arriving in a merged directory is made opaque too, as the
	// kernel does (see rename).
	opaque := func(h *layerHit, p *node, at string, updir int, name string) error {
		if h.kind != layer.HitDir {
			return nil
		}
		l, err := p.lookupChild(at, true)
		if err != nil {
			return err
		}
		l.closeFds(u)
		if l.kind == layer.HitDir || p.merged() {
			return u.makeOpaque(updir, name)
		}
		return nil
	}
	if err := opaque(src, np, newName, oldUp.fd, name); err != nil {
		return err
	}
	if err := opaque(dst, d, name, newUp.fd, newName); err != nil {
		return err
	}
	return unix.Renameat2(oldUp.fd, name, newUp.fd, newName, unix.RENAME_EXCHANGE)
}
