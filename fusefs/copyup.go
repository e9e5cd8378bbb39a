package fusefs

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"ovl/layer"
)

// copyUp makes sure the node's visible copy is in the upper layer, so it
// can be changed. With truncate, a regular file's data is not copied (it
// is about to be cut to zero). It is crash-safe: the copy is built in the
// work directory and renamed into place, so the upper never shows a
// partial file.
//
// A copy of a lower hard link gets a new inode number, and the kernel
// is told to look its name up again before copyUp returns, so a stat
// after the change sees the new number. That takes the parent
// directory's lock in the kernel: requests during which the kernel
// holds it (link, rename) use copyUpInDirOp instead.
func (n *node) copyUp(truncate bool) error { return n.copyUpNotify(truncate, false) }

// copyUpInDirOp is copyUp for requests that the kernel sends holding the
// parent directory's lock: the kernel learns a new inode number
// asynchronously.
func (n *node) copyUpInDirOp(truncate bool) error { return n.copyUpNotify(truncate, true) }

func (n *node) copyUpNotify(truncate, async bool) error {
	// 1. Fast path: already in the upper.
	if n.inUpper() {
		return nil
	}
	if !n.u.writable {
		return syscall.EROFS
	}
	// 2. The parent first, recursively up to the root (which always has
	// an upper).
	p, name := n.parentNode()
	if p == nil {
		return syscall.ESTALE // unlinked, or the root of a stack without upper
	}
	if err := p.copyUp(false); err != nil {
		return err
	}
	renumbered, err := n.copyUpOnce(p, name, truncate)
	if err != nil || !renumbered {
		return err
	}
	// 4. The name now stands for another inode number: the kernel must
	// look it up again (no node lock held, so a request the kernel holds
	// the parent's lock for can finish meanwhile).
	if async {
		go p.NotifyEntry(name)
	} else {
		p.NotifyEntry(name)
	}
	return nil
}

// copyUpOnce takes the node and copies it unless another request did
// meanwhile; io is taken first so no read or write runs on the old copy
// while it moves (lock order: io before mu).
func (n *node) copyUpOnce(p *node, name string, truncate bool) (renumbered bool, err error) {
	n.io.Lock()
	defer n.io.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	src := n.layers[0]
	if n.u.isUpper(src) {
		return false, nil
	}
	if err := n.copyUpLocked(p, name, src, truncate, &renumbered); err != nil {
		return false, fmt.Errorf("copy up %q: %w", name, err)
	}
	return renumbered, nil
}

// copyUpLocked does the copy, and sets *renumbered when the copy (of a
// lower hard link) takes a new inode number the kernel must learn.
// Preconditions: n.io and n.mu held; the parent p is in the upper.
func (n *node) copyUpLocked(p *node, name string, src int, truncate bool, renumbered *bool) (err error) {
	u := n.u
	srcDir, err := p.dirFd(src)
	if err != nil {
		return err
	}
	defer srcDir.release()
	upDir, err := p.dirFd(0)
	if err != nil {
		return err
	}
	defer upDir.release()

	// 4. What to copy: the lower's metadata.
	var st unix.Stat_t
	if err := unix.Fstatat(srcDir.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	typ := st.Mode & unix.S_IFMT

	// The kernel's record of the copy (see origin.go): the parent is
	// marked impure first; the copy gets the lower's file handle as its
	// origin, except a lower hard link, whose other links stay behind
	// as another file.
	var origin []byte
	if typ == unix.S_IFDIR || st.Nlink == 1 {
		if origin, err = u.origin.encode(srcDir.fd, name, &st); err != nil {
			return err
		}
	}
	if err := u.markImpure(upDir.fd); err != nil {
		return err
	}

	// 5. Create the copy in the work dir. From here on, one undo removes
	// it on every failure.
	tmp := u.tmpName()
	created := false
	defer func() {
		if err != nil && created {
			flags := 0
			if typ == unix.S_IFDIR {
				flags = unix.AT_REMOVEDIR
			}
			if uerr := unix.Unlinkat(u.workFd, tmp, flags); uerr != nil && !errors.Is(uerr, unix.ENOENT) {
				u.log.Warn("undo copy-up: scratch copy left in the work dir (removed at next mount)", "name", tmp, "err", uerr)
			}
		}
	}()
	switch typ {
	case unix.S_IFREG:
		created = true
		if err := copyFileData(srcDir.fd, name, u.workFd, tmp, truncate, !u.volatile); err != nil {
			return err
		}
	case unix.S_IFDIR:
		if err := unix.Mkdirat(u.workFd, tmp, 0o700); err != nil {
			return err
		}
		created = true
	case unix.S_IFLNK:
		target, err := readlinkAt(srcDir.fd, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, u.workFd, tmp); err != nil {
			return err
		}
		created = true
	default:
		if err := unix.Mknodat(u.workFd, tmp, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
		created = true
	}

	// 6. Owner first: chown(2) drops set-id bits and file capabilities
	// (security.capability), which the mode and xattrs below put back.
	if err := unix.Fchownat(u.workFd, tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	// Extended attributes, except the overlay's own.
	if err := u.copyXattrs(procPathAt(srcDir.fd, name), procPathAt(u.workFd, tmp)); err != nil {
		return err
	}
	if origin != nil {
		if err := u.setOrigin(procPathAt(u.workFd, tmp), origin); err != nil {
			return err
		}
	}

	// 7. Mode (the chown above cleared set-id bits), then times last.
	if typ != unix.S_IFLNK {
		if err := unix.Fchmodat(u.workFd, tmp, st.Mode&0o7777, 0); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(u.workFd, tmp, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}

	// 8. Rename into place: the one step that makes the copy visible.
	// The parent's times are put back afterwards, and a directory's own
	// (its ".." changed): a copy-up is not a change the user made.
	// Linux: fs/overlayfs/copy_up.c:ovl_copy_up_one restores pstat.
	var pst unix.Stat_t
	perr := unix.Fstat(upDir.fd, &pst)
	if err := unix.Renameat2(u.workFd, tmp, upDir.fd, name, unix.RENAME_NOREPLACE); err != nil {
		return err
	}
	created = false
	if typ == unix.S_IFDIR {
		unix.UtimesNanoAt(upDir.fd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if perr == nil {
		unix.UtimesNanoAt(upDir.fd, ".", []unix.Timespec{pst.Atim, pst.Mtim}, 0)
	}

	// 9. Publish: the node now lives in the upper. Nothing below can fail
	// in a way that makes the upper wrong; a failed directory open only
	// means no cached descriptor.
	// The copy keeps the origin's inode number, except a copy of a lower
	// hard link: its other links stay in the lower as another file, so
	// it takes the number of its upper inode (Linux:
	// fs/overlayfs/inode.c:ovl_getattr, "Lower hardlinks may be broken
	// on copy up"), and the kernel must look the name up again to learn
	// it (copyUpNotify tells it).
	renumber := typ != unix.S_IFDIR && st.Nlink > 1
	*renumbered = renumber
	// The node itself lives on for descriptors already open, under the
	// old number; u.renumbered finds it when the file is deleted.
	var ust unix.Stat_t
	if err := unix.Fstatat(upDir.fd, name, &ust, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if !renumber {
			u.origins.Store(devIno{ust.Dev, ust.Ino}, fileIdentity{n.ino, n.gen})
		} else {
			n.upperID = devIno{ust.Dev, ust.Ino}
			u.renumbered.Store(n.upperID, n)
		}
	}
	if typ == unix.S_IFDIR {
		fd, err := openDirAt(upDir.fd, name)
		if err != nil || u.dirFds.Add(1) > maxCachedDirFds {
			if err == nil {
				u.dirFds.Add(-1)
				unix.Close(fd)
			}
			fd = -1
		}
		if n.dirFds == nil {
			n.dirFds = make([]int, len(n.layers))
			for i := range n.dirFds {
				n.dirFds[i] = -1
			}
		}
		n.layers = append([]int{0}, n.layers...)
		n.dirFds = append([]int{fd}, n.dirFds...)
		n.opacity = append([]layer.Opacity{layer.Transparent}, n.opacity...)
	} else {
		n.layers = []int{0}
	}
	n.orphan = ""
	n.closeData() // the next read or write opens the upper copy
	n.notifyAttr()
	return nil
}

// copyFileData copies regular file name of srcDir to a new file dst of
// dstDir, with copy_file_range (reflinks where the filesystem has them),
// and syncs it when sync is set.
func copyFileData(srcDir int, name string, dstDir int, dst string, skipData, sync bool) error {
	out, err := unix.Openat(dstDir, dst, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(out)
	if skipData {
		return nil
	}
	in, err := unix.Openat(srcDir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(in)
	for {
		m, err := unix.CopyFileRange(in, nil, out, nil, 1<<30, 0)
		if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			// No copy_file_range between these filesystems: copy by hand,
			// from where it stopped.
			if err := copyRest(in, out); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return err
		}
		if m == 0 {
			break
		}
	}
	if sync {
		return unix.Fsync(out)
	}
	return nil
}

// copyRest copies what is left of in to out with read and write.
func copyRest(in, out int) error {
	buf := make([]byte, 1<<20)
	for {
		m, err := unix.Read(in, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if m == 0 {
			return nil
		}
		for p := buf[:m]; len(p) > 0; {
			w, err := unix.Write(out, p)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return err
			}
			p = p[w:]
		}
	}
}

// readlinkAt reads symlink name of dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		m, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if m < len(buf) {
			return string(buf[:m]), nil
		}
		buf = make([]byte, len(buf)*2)
	}
}
