package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// prepareCreate readies directory d for a new entry name: a writable
// stack, d in the upper, and name absent from the merged view. It tells
// whether the upper has a whiteout to replace and whether a new
// directory must be opaque (over a whiteout of the upper).
func (d *node) prepareCreate(name string) (h layerHit, opaqueDir bool, err error) {
	if !d.u.writable {
		return h, false, syscall.EROFS
	}
	if err := d.copyUp(false); err != nil {
		return h, false, err
	}
	h, err = d.lookupChild(name, false)
	if err != nil {
		return h, false, err
	}
	if h.kind == layer.HitNonDir || h.kind == layer.HitDir {
		h.closeFds(d.u)
		return h, false, syscall.EEXIST
	}
	// Linux: fs/overlayfs/dir.c:ovl_create_over_whiteout makes a new
	// directory opaque over a whiteout in the upper (one in a lower
	// layer goes on hiding what is below it). ovl_create_upper marks one
	// in a merged parent too, as an optimisation, but only where offline
	// changes to the layers are not allowed (index, redirect_dir or
	// metacopy on), which the union never is: there a lower directory
	// of that name added later would show through it.
	return h, h.kind == layer.HitWhiteout && h.upperWhiteout, nil
}

// createEntry makes name in d with mk (which creates an entry at a
// directory descriptor and name), over a whiteout if there is one, and
// returns the new child. A new directory that must hide the layers below
// is built opaque in the work dir and renamed into place, so it never
// shows lower entries, even after a crash.
func (d *node) createEntry(ctx context.Context, name string, isDir bool, mk func(dirfd int, name string, parent int) error, out *fuse.EntryOut) (*fs.Inode, error) {
	h, opaque, err := d.prepareCreate(name)
	if err != nil {
		return nil, err
	}
	u := d.u
	up, err := d.dirFd(0)
	if err != nil {
		return nil, err
	}
	defer up.release()
	var upperEntry bool // a whiteout at name in the upper (the kernel's format keeps it there)
	var wst unix.Stat_t
	if h.upperWhiteout && unix.Fstatat(up.fd, name, &wst, unix.AT_SYMLINK_NOFOLLOW) == nil {
		upperEntry = true
	}
	if !upperEntry && !(isDir && opaque) {
		if err := mk(up.fd, name, up.fd); err != nil {
			return nil, err
		}
	} else {
		tmp := u.tmpName()
		if err := mk(u.workFd, tmp, up.fd); err != nil {
			return nil, err
		}
		undo := func() { u.removeWork(tmp) }
		if isDir && opaque {
			if err := u.makeOpaque(u.workFd, tmp); err != nil {
				undo()
				return nil, err
			}
		}
		switch {
		case upperEntry && isDir:
			// rename(2) will not put a directory over a device:
			// exchange, then drop the whiteout.
			if err := unix.Renameat2(u.workFd, tmp, up.fd, name, unix.RENAME_EXCHANGE); err != nil {
				undo()
				return nil, err
			}
			u.removeWork(tmp)
		case upperEntry:
			if err := unix.Renameat(u.workFd, tmp, up.fd, name); err != nil {
				undo()
				return nil, err
			}
		default:
			if err := unix.Renameat2(u.workFd, tmp, up.fd, name, unix.RENAME_NOREPLACE); err != nil {
				undo()
				return nil, err
			}
		}
	}
	d.dirChanged()
	nh, err := d.lookupChild(name, false)
	if err != nil {
		return nil, err
	}
	if nh.kind != layer.HitNonDir && nh.kind != layer.HitDir {
		return nil, syscall.EIO
	}
	child := d.newChild(ctx, &nh)
	child.Operations().(*node).fillAttr(&nh.st, &out.Attr)
	return child, nil
}

// chownToCaller gives the new entry name of dirfd, of file type typ,
// the caller's owner, as the kernel does for files it creates; see
// ownByCaller.
func (u *unionFS) chownToCaller(ctx context.Context, dirfd int, name string, typ uint32, parent int) error {
	fd, _, err := openPathAt(dirfd, name, typ)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return u.ownByCaller(ctx, fd, dirfd == parent, parent)
}

// ownByCaller gives the new entry open at fd (any descriptor, O_PATH
// included) the caller's owner, as the kernel does for files it creates
// (through the stack's ID mapping: callerOwner). An unprivileged daemon
// cannot, and needs not: it is the caller. parent is the upper directory
// the entry is for (inParent: it was made there, not in the work dir): a
// set-group-ID parent gives its group, and its set-group-ID bit to a new
// directory.
func (u *unionFS) ownByCaller(ctx context.Context, fd int, inParent bool, parent int) error {
	uid, cgid, ok := u.callerOwner(ctx)
	if !ok {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	typ, mode := st.Mode&unix.S_IFMT, st.Mode&0o7777
	gid := int(cgid)
	var pst unix.Stat_t
	if unix.Fstat(parent, &pst) == nil && pst.Mode&unix.S_ISGID != 0 {
		gid = int(pst.Gid)
		if !inParent && typ == unix.S_IFDIR {
			mode |= unix.S_ISGID // mkdir in the parent would inherit it
		}
	}
	err := chownFd(fd, int(uid), gid)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		err = nil
	}
	if err != nil {
		return err
	}
	// chown(2) drops the set-user-ID and set-group-ID bits of a file
	// even for root; the kernel's overlay creates the file as the caller
	// and keeps the mode it was asked for (which the kernel stripped of
	// what the caller may not set before the union saw it).
	if typ != unix.S_IFLNK && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return chmodFd(fd, mode)
	}
	return nil
}

var _ = (fs.NodeMkdirer)((*node)(nil))

func (d *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	child, err := d.createEntry(ctx, name, true, func(dirfd int, nm string, parent int) error {
		if err := unix.Mkdirat(dirfd, nm, mode); err != nil {
			return err
		}
		return d.u.chownToCaller(ctx, dirfd, nm, unix.S_IFDIR, parent)
	}, out)
	return child, toErrno(err)
}

var _ = (fs.NodeMknoder)((*node)(nil))

func (d *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if layer.IsWhiteoutDevice(mode, uint64(dev)) {
		// A user must not be able to forge a whiteout.
		return nil, syscall.EPERM
	}
	child, err := d.createEntry(ctx, name, false, func(dirfd int, nm string, parent int) error {
		if err := unix.Mknodat(dirfd, nm, mode, int(dev)); err != nil {
			return err
		}
		return d.u.chownToCaller(ctx, dirfd, nm, mode&unix.S_IFMT, parent)
	}, out)
	return child, toErrno(err)
}

var _ = (fs.NodeSymlinker)((*node)(nil))

func (d *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	child, err := d.createEntry(ctx, name, false, func(dirfd int, nm string, parent int) error {
		if err := unix.Symlinkat(target, dirfd, nm); err != nil {
			return err
		}
		return d.u.chownToCaller(ctx, dirfd, nm, unix.S_IFLNK, parent)
	}, out)
	return child, toErrno(err)
}

var _ = (fs.NodeCreater)((*node)(nil))

func (d *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	child, err := d.createEntry(ctx, name, false, func(dirfd int, nm string, parent int) error {
		fd, err := unix.Openat(dirfd, nm, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode&0o7777)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return d.u.ownByCaller(ctx, fd, dirfd == parent, parent)
	}, out)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	cn := child.Operations().(*node)
	fh, fl, errno := cn.newHandleWith(func() (int, error) {
		up, err := d.dirFd(0)
		if err != nil {
			return -1, err
		}
		defer up.release()
		pfd, _, err := openPathAt(up.fd, name, unix.S_IFREG)
		if err != nil {
			return -1, err
		}
		defer unix.Close(pfd)
		return reopen(pfd, unix.O_RDONLY)
	})
	return child, fh, fl, errno
}

var _ = (fs.NodeTmpfiler)((*node)(nil))

// Tmpfile makes the file of open(2) with O_TMPFILE in d: a file of the
// work dir that the node reaches as an unlinked file's data (node.orphan:
// nlink 0, removed when the kernel forgets it) until Link gives it a name
// in the upper. The kernel's overlay copies the directory up first too
// (Linux: fs/overlayfs/dir.c:ovl_tmpfile).
func (d *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !d.u.writable {
		return nil, nil, 0, syscall.EROFS
	}
	if err := d.copyUp(false); err != nil {
		return nil, nil, 0, toErrno(err)
	}
	up, err := d.dirFd(0)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	defer up.release()
	u := d.u
	tmp := u.tmpName()
	fd, err := unix.Openat(u.workFd, tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode&0o7777)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	var st unix.Stat_t
	err = u.ownByCaller(ctx, fd, false, up.fd)
	if err == nil {
		err = unix.Fstat(fd, &st)
	}
	unix.Close(fd)
	if err != nil {
		u.removeWork(tmp)
		return nil, nil, 0, toErrno(err)
	}
	// The identity newChild gives the file once linked, so Link finds
	// this node (unionFS.known) for its name.
	id := fs.StableAttr{Mode: unix.S_IFREG}
	id.Ino, id.Gen = u.fileID(&st, 0, d.ino, "")
	id.Gen = u.freeGen(id, 0)
	n := newNode(u, id.Ino, false, []int{0})
	n.gen = id.Gen
	n.orphan, n.orphanLayer = tmp, -1
	u.known.Store(id, n)
	n.fillAttr(&st, &out.Attr)
	child := d.NewInode(ctx, n, id)
	fh, fl, errno := n.newHandleWith(func() (int, error) {
		return unix.Openat(u.workFd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	return child, fh, fl, errno
}

var _ = (fs.NodeLinker)((*node)(nil))

// markImpureFor marks directory d's upper copy impure before the
// copied-up file tn gets a name in it (see unionFS.impureFor); the new
// name itself may be built in the work dir and renamed into place.
func (d *node) markImpureFor(tn *node) error {
	if err := d.copyUp(false); err != nil {
		return err
	}
	up, err := d.dirFd(0)
	if err != nil {
		return err
	}
	defer up.release()
	return tn.at(0, func(srcDir int, srcName string) error {
		return d.u.impureFor(up.fd, srcDir, srcName)
	})
}

func (d *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if !d.u.writable {
		return nil, syscall.EROFS
	}
	if err := tn.copyUpInDirOp(false); err != nil {
		return nil, toErrno(err)
	}
	if err := d.markImpureFor(tn); err != nil {
		return nil, toErrno(err)
	}
	var linkErr error
	child, err := d.createEntry(ctx, name, false, func(dirfd int, nm string, parent int) error {
		linkErr = tn.at(0, func(srcDir int, srcName string) error {
			return unix.Linkat(srcDir, srcName, dirfd, nm, 0)
		})
		return linkErr
	}, out)
	if err != nil {
		return nil, toErrno(err)
	}
	// A file that had no name (Tmpfile) has one now: its work dir entry
	// goes, and its link count is the upper file's again.
	tn.mu.Lock()
	orphan, orphanLayer := tn.orphan, tn.orphanLayer
	if orphan != "" && orphanLayer < 0 {
		tn.orphan = ""
	}
	tn.mu.Unlock()
	if orphan != "" && orphanLayer < 0 {
		d.u.removeWork(orphan)
	}
	tn.notifyAttr()
	return child, 0
}

// notifyAttr tells the kernel to drop the node's cached attributes,
// which the union changed behind its back (a copy-up changes the link
// count and ctime). It is synchronous, so the next stat sees the change:
// invalidating attributes only (offset -1) takes no inode lock in the
// kernel (Linux: fs/fuse/inode.c:fuse_reverse_inval_inode), so it is
// safe while a request on the node is in flight.
func (n *node) notifyAttr() {
	n.NotifyContent(-1, 0)
}

var _ = (fs.NodeUnlinker)((*node)(nil))

func (d *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return toErrno(d.remove(name, false))
}

var _ = (fs.NodeRmdirer)((*node)(nil))

func (d *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return toErrno(d.remove(name, true))
}

// remove deletes name from d: from the upper when only the upper has it,
// with a whiteout when a lower layer has it too. A regular file the
// kernel still knows stays readable through open descriptors: its upper
// copy is moved into the work dir until the kernel forgets it.
func (d *node) remove(name string, dir bool) (err error) {
	if !d.u.writable {
		return syscall.EROFS
	}
	if err := d.copyUp(false); err != nil {
		return err
	}
	h, err := d.lookupChild(name, false)
	if err != nil {
		return err
	}
	defer h.closeFds(d.u)
	switch {
	case h.kind == layer.HitNone || h.kind == layer.HitWhiteout:
		return syscall.ENOENT
	case dir && h.kind != layer.HitDir:
		return syscall.ENOTDIR
	case !dir && h.kind == layer.HitDir:
		return syscall.EISDIR
	}
	var child *node
	if ci := d.GetChild(name); ci != nil {
		child, _ = ci.Operations().(*node)
	}
	if dir {
		if child == nil {
			return syscall.ESTALE
		}
		list, err := child.mergedList(true)
		if err != nil {
			return err
		}
		if len(list) > 0 {
			return syscall.ENOTEMPTY
		}
	}
	lower, err := d.lookupChild(name, true)
	if err != nil {
		return err
	}
	lower.closeFds(d.u)
	defer d.dirChanged()
	lowerPositive := lower.kind == layer.HitNonDir || lower.kind == layer.HitDir
	inUpper := d.u.isUpper(h.layers[0])
	if inUpper {
		defer func() {
			if err == nil {
				d.u.forgetOrigin(&h.st)
			}
		}()
	}

	up, err := d.dirFd(0)
	if err != nil {
		return err
	}
	defer up.release()
	keep := !dir && child != nil && inUpper && h.st.Mode&unix.S_IFMT == unix.S_IFREG && h.st.Nlink == 1
	switch {
	case !inUpper:
		// Only lowers have it: a whiteout is all it takes. Open
		// descriptors keep reading the lower copy.
		if child != nil && !dir {
			child.mu.Lock()
			child.orphan, child.orphanLayer = child.Path(nil), h.layers[0]
			child.mu.Unlock()
		}
		return d.u.wr.Whiteout(up.fd, name)
	case lowerPositive:
		if dir {
			if err := d.u.clearWhiteouts(up.fd, name); err != nil {
				return err
			}
		}
		kept, err := d.u.whiteoutEntry(up.fd, name, true, keep)
		if err != nil {
			return err
		}
		if keep {
			child.setOrphan(kept)
			d.u.orphanAlias(&h.st, child, kept)
		}
		return nil
	case keep:
		tmp := d.u.tmpName()
		if err := unix.Renameat(up.fd, name, d.u.workFd, tmp); err != nil {
			return err
		}
		child.setOrphan(tmp)
		d.u.orphanAlias(&h.st, child, tmp)
		return nil
	case dir:
		err := unix.Unlinkat(up.fd, name, unix.AT_REMOVEDIR)
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			// Only whiteouts left (the merged view is empty).
			if err := d.u.clearWhiteouts(up.fd, name); err != nil {
				return err
			}
			err = unix.Unlinkat(up.fd, name, unix.AT_REMOVEDIR)
		}
		return err
	default:
		return unix.Unlinkat(up.fd, name, 0)
	}
}

// orphanAlias gives the node a lower hard link was copied up through
// (unionFS.renumbered), if it is not child itself, its own link to the
// unlinked file kept at work-dir entry kept, and makes the kernel ask
// for its attributes again: descriptors opened before the copy-up see
// the file deleted (nlink 0), as under the kernel's overlay, where both
// are one inode.
func (u *unionFS) orphanAlias(st *unix.Stat_t, child *node, kept string) {
	v, ok := u.renumbered.LoadAndDelete(devIno{st.Dev, st.Ino})
	if !ok || v.(*node) == child {
		return
	}
	alias := v.(*node)
	tmp := u.tmpName()
	if err := unix.Linkat(u.workFd, kept, u.workFd, tmp, 0); err != nil {
		u.log.Warn("keep unlinked file for descriptors opened before its copy-up", "name", kept, "err", err)
		return
	}
	alias.setOrphan(tmp)
	alias.notifyAttr()
}

// setOrphan records that the node's data now lives at work-dir entry
// name, removed when the kernel forgets the node.
func (n *node) setOrphan(name string) {
	n.mu.Lock()
	n.orphan, n.orphanLayer = name, -1
	n.mu.Unlock()
}
