package fusefs

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// copyUp makes sure the node's visible copy is in the upper layer, so it
// can be changed. With truncate, a regular file's data is not copied (it
// is about to be cut to zero). It is crash-safe: the copy is built out of
// sight (a regular file as an unnamed O_TMPFILE on its upper directory,
// anything else in the work directory; see scratch) and linked or renamed
// into place, so the upper never shows a partial file.
//
// The steps, numbered where they are done: 1-2 here (copyUpNotify),
// 3 in copyUpOnce, 4-9 in copyUpLocked (6-7 in scratch.takeMeta), 10
// back here.
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
	// an upper); an unlinked lower file has none, and a copy of its own.
	p, name := n.parentNode()
	if p == nil {
		return n.copyUpOrphan()
	}
	if err := p.copyUp(false); err != nil {
		return err
	}
	renumbered, err := n.copyUpOnce(p, name, truncate)
	if err != nil || !renumbered {
		return err
	}
	// 10. The name now stands for another inode number: the kernel must
	// look it up again (no node lock held, so a request the kernel holds
	// the parent's lock for can finish meanwhile).
	if async {
		go p.NotifyEntry(name)
	} else {
		p.NotifyEntry(name)
	}
	return nil
}

// copyUpOrphan is copyUpOrphanLocked for an unlinked node, unless it has
// been copied meanwhile: ESTALE for a node that is not an orphan (the
// root of a stack without upper).
func (n *node) copyUpOrphan() error {
	n.io.Lock()
	defer n.io.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.u.isUpper(n.layers[0]):
		return nil
	case n.orphan == "" || n.isDir:
		return syscall.ESTALE
	}
	if err := n.copyUpOrphanLocked(); err != nil {
		return fmt.Errorf("copy up unlinked %q: %w", n.orphan, err)
	}
	return nil
}

// copyUpOnce takes the node and copies it unless another request did
// meanwhile; io is taken first so no read or write runs on the old copy
// while it moves (lock order: io before mu).
func (n *node) copyUpOnce(p *node, name string, truncate bool) (renumbered bool, err error) {
	// 3. Both locks, then check again: another request may have copied
	// the node while this one waited.
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
func (n *node) copyUpLocked(p *node, name string, srcLayer int, truncate bool, renumbered *bool) (err error) {
	u := n.u
	srcDir, err := p.dirFd(srcLayer)
	if err != nil {
		return err
	}
	defer srcDir.release()
	upDir, err := p.dirFd(0)
	if err != nil {
		return err
	}
	defer upDir.release()

	// 4. What to copy: the lower file, held by an O_PATH descriptor
	// from here on, and checked to be still of the node's type (a layer
	// entry swapped behind the union's back is ESTALE, never copied).
	src, st, err := openPathAt(srcDir.fd, name, n.fileType())
	if err != nil {
		return err
	}
	defer unix.Close(src)
	typ := st.Mode & unix.S_IFMT

	// The kernel's record of the copy (see origin.go): the parent is
	// marked impure first; the copy gets the lower's file handle as its
	// origin, except a lower hard link, whose other links stay behind
	// as another file.
	var origin []byte
	if typ == unix.S_IFDIR || st.Nlink == 1 {
		if origin, err = u.origin.encode(srcDir.fd, src, &st); err != nil {
			return err
		}
	}
	if !p.impure.Load() {
		if err := u.markImpure(upDir.fd); err != nil {
			return err
		}
		p.impure.Store(true)
	}

	// 5. Create the copy out of sight (see scratch). From here on, one
	// undo removes it on every failure.
	sc, err := u.newScratch(typ, src, &st, upDir.fd, truncate)
	if err != nil {
		return err
	}
	published := false
	defer func() { sc.close(!published) }()

	// 6-7. Owner (as the upper keeps it: u.copyOwner), xattrs, the
	// origin record, mode, times (takeMeta).
	if err := sc.takeMeta(procPathAt(srcDir.fd, name), u.copyOwner(srcLayer, st), origin); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}

	// 8. Link or rename into place: the one step that makes the copy
	// visible. The parent's times are put back afterwards, and a
	// directory's own (its ".." changed): a copy-up is not a change the
	// user made. Linux: fs/overlayfs/copy_up.c:ovl_copy_up_one restores
	// pstat.
	var pst unix.Stat_t
	perr := unix.Fstat(upDir.fd, &pst)
	if err := sc.publish(upDir.fd, name); err != nil {
		return err
	}
	published = true
	// The copy's descriptor stays with the node for its reads and
	// writes (keepDataLocked); the syncer gets one of its own.
	data := sc.fd
	sc.fd = -1
	if data >= 0 && u.syncer != nil && !truncate {
		if fd, err := unix.FcntlInt(uintptr(data), unix.F_DUPFD_CLOEXEC, 0); err == nil {
			u.syncer.add(fd, name)
		} else {
			unix.Fsync(data) // no descriptor to spare: sync it now
		}
	}
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
			if typ != unix.S_IFDIR { // a directory's number is its bottom copy's anyway
				u.origins.Store(devIno{ust.Dev, ust.Ino}, fileIdentity{n.ino, n.gen})
			}
		} else {
			n.upperID = devIno{ust.Dev, ust.Ino}
			u.renumbered.Store(n.upperID, n)
			p.dirChanged() // its listing shows the new number
		}
	}
	if typ == unix.S_IFDIR {
		fd, err := openDirAt(upDir.fd, name)
		if err == nil && !u.keepDirFd() {
			unix.Close(fd)
			err = unix.EMFILE
		}
		if err != nil {
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
	n.closeDataLocked() // reads and writes now go to the upper copy
	n.keepDataLocked(data)
	n.notifyAttr()
	return nil
}

// takeMeta gives the scratch copy the metadata st describes, the xattrs
// of the file at xattrSrc (a path whose last component is not followed:
// the source's entry, which the caller holds open and checked) and,
// unless nil, origin as its overlay.origin.
func (sc *scratch) takeMeta(xattrSrc string, st *unix.Stat_t, origin []byte) error {
	// 6. Owner first: chown(2) drops set-id bits and file capabilities
	// (security.capability), which the mode and xattrs below put back.
	if err := sc.chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	// Extended attributes, except the overlay's own.
	if err := sc.u.copyXattrs(xattrSrc, sc.setXattr); err != nil {
		return err
	}
	if origin != nil {
		if err := sc.u.setOrigin(sc.setXattr, origin); err != nil {
			return err
		}
	}
	// 7. Mode (the chown above cleared set-id bits), then times last.
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := sc.chmod(st.Mode & 0o7777); err != nil {
			return err
		}
	}
	return sc.utimes([]unix.Timespec{st.Atim, st.Mtim})
}

// copyUpOrphanLocked gives an unlinked lower file that open descriptors
// still reach (node.orphan in a lower layer) a copy of its own, so it
// can be changed: a named entry of the work dir, which the node reaches
// as an unlinked upper file's data (nlink 0, removed when the kernel
// forgets it). It is what the kernel's overlay has for such a descriptor
// by then: the upper copy it made at open, unlinked since (a default
// mode union copies at the first change, after the unlink). Preconditions:
// n.io and n.mu held; n is a lower orphan.
func (n *node) copyUpOrphanLocked() error {
	var sc *scratch
	err := n.atWith(n.orphan, n.orphanLayer, false, n.layers[0], func(dirfd int, name string) error {
		src, st, err := openPathAt(dirfd, name, n.fileType())
		if err != nil {
			return err
		}
		defer unix.Close(src)
		if sc, err = n.u.newScratch(st.Mode&unix.S_IFMT, src, &st, -1, false); err != nil {
			return err
		}
		if err := sc.takeMeta(procPathAt(dirfd, name), n.u.copyOwner(n.orphanLayer, st), nil); err != nil {
			sc.close(true)
			sc = nil
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	data := sc.fd
	sc.fd = -1
	sc.close(false)
	n.orphan, n.orphanLayer = sc.name, -1
	n.layers = []int{0}
	n.closeDataLocked()
	n.keepDataLocked(data)
	n.notifyAttr()
	return nil
}

// scratch is a copy being built where no one sees it. A regular file is
// an unnamed O_TMPFILE, linked into place when done, as the kernel's
// ovl_copy_up_tmpfile does: a crash leaves nothing behind, and its fsync
// need not write a directory entry too. Unlike the kernel's, it is
// opened on the upper directory it will be linked into, not on the work
// dir: it has no name either way, but the filesystem places an inode
// near the directory it is opened on (ext4: its block group), so copies
// sit by their directory as files created there do, instead of all
// crowding the work dir's group (where ext4 without a journal scans past
// every inode freed in the last minute for each new one: 2000 copy-ups
// took 1.3-1.7 s instead of 0.6 s after a tree was deleted there); and
// it takes the directory's project quota, which linkat requires.
// Anything else, and a regular file where O_TMPFILE is refused, is a
// named entry in the work dir renamed into place.
type scratch struct {
	u    *unionFS
	fd   int    // the regular file's descriptor, or -1
	name string // the entry in the work dir, or "" for an O_TMPFILE
	dir  bool
}

// newScratch creates the copy of src (an O_PATH descriptor of a file of
// type typ), to be published in the upper directory upDir (-1: to stay a
// named entry of the work dir): a regular file with its data (unless
// skipData), synced unless the stack is volatile or has a syncer to do
// it after the link; an empty directory; the symlink; the device node,
// fifo or socket.
func (u *unionFS) newScratch(typ uint32, src int, st *unix.Stat_t, upDir int, skipData bool) (sc *scratch, err error) {
	sc = &scratch{u: u, fd: -1, dir: typ == unix.S_IFDIR}
	if typ == unix.S_IFREG {
		// Read-write: the node keeps a descriptor of the copy for its
		// reads and writes (see keepDataLocked).
		err = unix.EINVAL
		if upDir >= 0 {
			sc.fd, err = unix.Openat(upDir, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			sc.name = u.tmpName()
			sc.fd, err = unix.Openat(u.workFd, sc.name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		}
		if err != nil {
			return nil, err
		}
		if sc.name == "" {
			// Created in the upper directory, it inherited that
			// directory's default ACL, if any; the copy gets the lower
			// file's own (copyXattrs) or none.
			if err := unix.Fremovexattr(sc.fd, "system.posix_acl_access"); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
				sc.close(true)
				return nil, err
			}
		}
		if err := copyFileData(src, sc.fd, st.Size, skipData, !u.volatile && u.syncer == nil); err != nil {
			sc.close(true)
			return nil, err
		}
		return sc, nil
	}
	sc.name = u.tmpName()
	switch typ {
	case unix.S_IFDIR:
		err = unix.Mkdirat(u.workFd, sc.name, 0o700)
	case unix.S_IFLNK:
		var target string
		if target, err = readlinkAt(src, ""); err == nil {
			err = unix.Symlinkat(target, u.workFd, sc.name)
		}
	default:
		err = unix.Mknodat(u.workFd, sc.name, st.Mode, int(st.Rdev))
	}
	if err != nil {
		return nil, err
	}
	return sc, nil
}

func (sc *scratch) chown(uid, gid int) error {
	if sc.fd >= 0 {
		return unix.Fchown(sc.fd, uid, gid)
	}
	return unix.Fchownat(sc.u.workFd, sc.name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

func (sc *scratch) setXattr(name string, val []byte) error {
	if sc.fd >= 0 {
		return unix.Fsetxattr(sc.fd, name, val, 0)
	}
	return unix.Lsetxattr(procPathAt(sc.u.workFd, sc.name), name, val, 0)
}

func (sc *scratch) chmod(mode uint32) error {
	if sc.fd >= 0 {
		return unix.Fchmod(sc.fd, mode)
	}
	return unix.Fchmodat(sc.u.workFd, sc.name, mode, 0)
}

func (sc *scratch) utimes(ts []unix.Timespec) error {
	if sc.fd >= 0 {
		return unix.UtimesNanoAt(unix.AT_FDCWD, procPath(sc.fd), ts, 0)
	}
	return unix.UtimesNanoAt(sc.u.workFd, sc.name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// publish gives the copy its name in the upper directory dirfd, failing
// if the name is taken.
func (sc *scratch) publish(dirfd int, name string) error {
	if sc.name == "" {
		return unix.Linkat(unix.AT_FDCWD, procPath(sc.fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
	}
	return unix.Renameat2(sc.u.workFd, sc.name, dirfd, name, unix.RENAME_NOREPLACE)
}

// close releases the descriptor and, with discard, removes a named copy
// from the work dir (an O_TMPFILE goes with its descriptor).
func (sc *scratch) close(discard bool) {
	if sc.fd >= 0 {
		unix.Close(sc.fd)
	}
	if !discard || sc.name == "" {
		return
	}
	flags := 0
	if sc.dir {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(sc.u.workFd, sc.name, flags); err != nil && !errors.Is(err, unix.ENOENT) {
		sc.u.log.Warn("undo copy-up: scratch copy left in the work dir (removed at next mount)", "name", sc.name, "err", err)
	}
}

// copyFileData copies the regular file the O_PATH descriptor src refers
// to into out, with copy_file_range (reflinks where the filesystem has
// them), and syncs it when sync is set. size is the file's size as stat
// saw it just before: the copy ends there without a last call to find
// the end (a file changed in its layer meanwhile is copied as it was
// then, or up to where it ends now).
func copyFileData(src int, out int, size int64, skipData, sync bool) error {
	if skipData {
		return nil
	}
	in, err := reopen(src, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer unix.Close(in)
	for copied := int64(0); copied < size; {
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
		copied += int64(m)
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

// readlinkAt reads symlink name of dirfd (name "": the symlink an O_PATH
// descriptor dirfd refers to).
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
