package fusefs

import (
	"context"
	"io"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// openData opens the node's visible copy for reading, or for writing
// (then the copy must be in the upper).
func (n *node) openData(write bool) (int, error) {
	flags := unix.O_RDONLY
	if write {
		flags = unix.O_RDWR
	}
	return n.openFile(n.topLayer(), flags)
}

// openFile opens the node's copy in layer li, a regular file, with
// flags: checked through an O_PATH descriptor first (see pathFd), so
// that an entry swapped for a symlink, fifo or device is never opened.
func (n *node) openFile(li int, flags int) (int, error) {
	pfd, _, err := n.pathFd(li)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	return reopen(pfd, flags)
}

// dataFdLocked returns a descriptor of the node's data, cached when the budget
// allows. Preconditions: n.io held (shared). The caller calls done.
func (n *node) dataFdLocked(write bool) (fd int, done func(), err error) {
	n.dataMu.Lock()
	defer n.dataMu.Unlock()
	if n.wfd >= 0 {
		return n.wfd, func() {}, nil
	}
	if !write && n.rfd >= 0 {
		return n.rfd, func() {}, nil
	}
	fd, err = n.openData(write)
	if err != nil {
		return -1, nil, err
	}
	if !n.u.keepDataFd() {
		return fd, func() { unix.Close(fd) }, nil
	}
	if write {
		n.wfd = fd
	} else {
		n.rfd = fd
	}
	return fd, func() {}, nil
}

// keepDataLocked caches fd, a read-write descriptor of the node's upper copy
// (-1 for none), when the budget allows; else closes it. Preconditions:
// n.io held exclusively, no descriptor cached.
func (n *node) keepDataLocked(fd int) {
	if fd < 0 {
		return
	}
	if !n.u.keepDataFd() {
		unix.Close(fd)
		return
	}
	n.dataMu.Lock()
	n.wfd = fd
	n.dataMu.Unlock()
}

// closeDataLocked drops the cached data descriptors, so the next request opens
// the node's current copy. Preconditions: n.io held exclusively, or the
// node forgotten.
func (n *node) closeDataLocked() {
	n.dataMu.Lock()
	defer n.dataMu.Unlock()
	for _, p := range []*int{&n.rfd, &n.wfd} {
		if *p >= 0 {
			unix.Close(*p)
			n.u.dataFds.Add(-1)
			*p = -1
		}
	}
}

// fileHandle is an open file. Reads and writes go through the node (so
// a handle opened before a copy-up sees the copy) unless the kernel
// passes them through to backing.
type fileHandle struct {
	// backing is the upper file the kernel reads and writes directly, or
	// -1 for a handle served by the daemon (a lower file).
	backing int
	// cached counts in node.cachedOpens.
	cached bool
}

var _ = (fs.FilePassthroughFder)((*fileHandle)(nil))

func (h *fileHandle) PassthroughFd() (int, bool) { return h.backing, h.backing >= 0 }

func isWriteOpen(flags uint32) bool {
	return flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
}

var _ = (fs.NodeOpener)((*node)(nil))

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.u.noOpen {
		// Linux: fs/fuse/file.c:fuse_file_open sets no_open on ENOSYS:
		// no more OPEN/FLUSH/RELEASE round trips, page cache kept; but
		// an open for writing then copies up only at the first write.
		return nil, 0, syscall.ENOSYS
	}
	if isWriteOpen(flags) {
		if !n.u.writable {
			return nil, 0, syscall.EROFS
		}
		if err := n.copyUp(flags&unix.O_TRUNC != 0); err != nil {
			return nil, 0, toErrno(err)
		}
	}
	return n.newHandle()
}

// newHandle opens a handle on the node's current copy: passthrough for an
// upper file when no daemon-served handle is open (the kernel refuses to
// mix the two on one inode), daemon-served otherwise.
func (n *node) newHandle() (fs.FileHandle, uint32, syscall.Errno) {
	return n.newHandleWith(func() (int, error) {
		fd := -1
		err := n.atLocked(func(dirfd int, name string) error {
			pfd, _, err := openPathAt(dirfd, name, unix.S_IFREG)
			if err != nil {
				return err
			}
			defer unix.Close(pfd)
			fd, err = reopen(pfd, unix.O_RDONLY)
			return err
		})
		return fd, err
	})
}

// newHandleWith is newHandle with open giving the backing descriptor (a
// node just created is not in the tree yet, so it cannot find itself).
//
// Without passthrough there is no handle: reads and writes go through
// the node. That matters beyond saving the bookkeeping: once the kernel
// knows the union needs no opens, it sends no RELEASE for a file made by
// CREATE either (Linux: fs/fuse/file.c:fuse_file_put), so a handle
// given out then would never be released, and would keep its node, and
// so the file's every trace, for the life of the mount.
func (n *node) newHandleWith(open func() (int, error)) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.u.passthrough {
		return nil, fuse.FOPEN_KEEP_CACHE, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// Not for a lower hard link copied up (a node with a twin): the
	// daemon must see its writes to tell the twin.
	if n.u.isUpper(n.layers[0]) && n.cachedOpens == 0 && n.upperID == (devIno{}) && n.twin.Load() == nil {
		if fd, err := open(); err == nil {
			return &fileHandle{backing: fd}, 0, 0
		}
	}
	n.cachedOpens++
	return &fileHandle{backing: -1, cached: true}, fuse.FOPEN_KEEP_CACHE, 0
}

var _ = (fs.NodeReleaser)((*node)(nil))

func (n *node) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	h, ok := f.(*fileHandle)
	if !ok {
		return 0
	}
	if h.backing >= 0 {
		unix.Close(h.backing)
	}
	if h.cached {
		n.mu.Lock()
		n.cachedOpens--
		n.mu.Unlock()
	}
	return 0
}

var _ = (fs.NodeFlusher)((*node)(nil))

// Flush answers ENOSYS: the data is written through already, and the
// kernel then never sends FLUSH on close again.
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno { return syscall.ENOSYS }

var _ = (fs.NodeReader)((*node)(nil))

func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.io.RLock()
	defer n.io.RUnlock()
	fd, done, err := n.dataFdLocked(false)
	if err != nil {
		return nil, toErrno(err)
	}
	defer done()
	if len(dest) < minSpliceRead {
		m, err := preadFull(fd, dest, off)
		if err != nil {
			return nil, toErrno(err)
		}
		// A vector: written out with writev, never tried for splice.
		return fuse.ReadResultVector([][]byte{dest[:m]}), 0
	}
	// A descriptor of its own, so a copy-up closing the node's cached
	// one before the reply is written changes nothing: the read is of
	// the copy that was current when it arrived (the kernel keeps a
	// write of the same pages waiting until the reply).
	own, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	return &spliceRead{fd: own, off: off, size: len(dest)}, 0
}

// minSpliceRead is the smallest READ spliced (see spliceRead): below it,
// copying the data costs less than the splice's extra system calls.
const minSpliceRead = 64 << 10

// spliceRead is a READ reply that go-fuse splices from the file into
// /dev/fuse after Read returns (its seekableResult): the kernel copies
// the data once, where reading it into the daemon and writing it out
// copies it twice (a 1 GiB sequential read: 622 ms before, measured with
// fio). Bytes reads it by hand where splicing is refused (a pipe may
// not grow to the reply's size without privilege). Done closes fd.
type spliceRead struct {
	fd   int // owned
	off  int64
	size int
}

func (r *spliceRead) Seekable() (uintptr, int64, int) { return uintptr(r.fd), r.off, r.size }

func (r *spliceRead) Size() int { return r.size }

func (r *spliceRead) Done() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

func (r *spliceRead) Bytes(buf []byte) ([]byte, fuse.Status) {
	if cap(buf) < r.size {
		buf = make([]byte, r.size)
	}
	m, err := preadFull(r.fd, buf[:r.size], r.off)
	if err != nil {
		return nil, fuse.ToStatus(err)
	}
	return buf[:m], fuse.OK
}

// preadFull reads buf from fd at off, short only at the end of the file.
func preadFull(fd int, buf []byte, off int64) (int, error) {
	total := 0
	for total < len(buf) {
		m, err := unix.Pread(fd, buf[total:], off+int64(total))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if m == 0 {
			break
		}
		total += m
	}
	return total, nil
}

var _ = (fs.NodeWriter)((*node)(nil))

// appendFlag, set in a WRITE's offset by rawUnion.Writev, marks a write
// through an O_APPEND descriptor (offsets are below 1<<63).
const appendFlag = 1 << 63

func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	appending := uint64(off)&appendFlag != 0
	off = int64(uint64(off) &^ appendFlag)
	if !n.u.writable {
		return 0, syscall.EROFS
	}
	if err := n.copyUp(false); err != nil {
		return 0, toErrno(err)
	}
	n.io.RLock()
	defer n.io.RUnlock()
	if appending && n.twin.Load() != nil {
		return n.appendTwinnedLocked(data, off)
	}
	fd, done, err := n.dataFdLocked(true)
	if err != nil {
		return 0, toErrno(err)
	}
	defer done()
	if appending {
		// The kernel put the write at the end of the file as it last
		// heard of it; a lower file that grew in its layer since (the
		// copy-up copied it as it is now) ends further on. Write at the
		// real end, as the kernel's overlay does, and have the kernel
		// drop the size and pages it has wrong. The kernel sends one
		// write of an inode at a time, so the end cannot move meanwhile.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, toErrno(err)
		}
		if st.Size != off {
			off = st.Size
			n.dropCacheAfterReply()
		}
	}
	m, err := unix.Pwrite(fd, data, off)
	n.notifyTwin()
	if err != nil {
		return uint32(max(m, 0)), toErrno(err)
	}
	return uint32(m), 0
}

// appendTwinnedLocked appends data to a file the kernel knows as two inodes
// (node.twin). The kernel put the write at the end it knows for n, which
// misses a change through the twin (an invalidation does not refresh
// the size it appends at), so the write goes to the file's real end,
// and the kernel, whose page cache and size for n now disagree with the
// file, is told to drop them once this request is answered
// (dropCacheAfterReply). Preconditions: n.io held (shared).
func (n *node) appendTwinnedLocked(data []byte, kernelOff int64) (uint32, syscall.Errno) {
	fd, err := n.openFile(n.topLayer(), unix.O_WRONLY|unix.O_APPEND)
	if err != nil {
		return 0, toErrno(err)
	}
	defer unix.Close(fd)
	m, err := unix.Write(fd, data)
	n.notifyTwin()
	if end, serr := unix.Seek(fd, 0, io.SeekCurrent); serr != nil || end-int64(max(m, 0)) != kernelOff {
		n.dropCacheAfterReply()
	}
	if err != nil {
		return uint32(max(m, 0)), toErrno(err)
	}
	return uint32(m), 0
}

// dropCacheAfterReply makes the kernel drop the node's attributes and
// cached pages once the request in flight is answered: a write through
// the page cache holds its pages locked until then, and an invalidation
// of them waits for that. Until it is done, the pages are marked stale
// (see dropStalePages).
func (n *node) dropCacheAfterReply() {
	n.pagesStale.Store(true)
	go n.dropStalePages()
}

// dropStalePages makes the kernel drop the node's attributes and cached
// pages if a write left them wrong (node.pagesStale). Getattr calls it
// too: a read past the end the kernel knows, as a write leaves it, asks
// for the size first, and must then read the file anew, however late
// the goroutine of dropCacheAfterReply runs, or however early: a Getattr
// that comes while the goroutine's invalidation is under way waits for
// it (node.dropping), or the read could still find the stale pages.
func (n *node) dropStalePages() {
	n.dropping.Lock()
	defer n.dropping.Unlock()
	if n.pagesStale.Swap(false) {
		n.NotifyContent(0, 0)
	}
}

var _ = (fs.NodeFsyncer)((*node)(nil))

// Fsync syncs the upper copy; nothing on a volatile stack, whose upper
// is thrown away after a crash anyway (Linux: fs/overlayfs/file.c:ovl_fsync
// skips it when !ovl_should_sync).
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if n.u.volatile || !n.inUpper() || n.isDir {
		return 0
	}
	n.io.RLock()
	defer n.io.RUnlock()
	fd, done, err := n.dataFdLocked(true)
	if err != nil {
		return toErrno(err)
	}
	defer done()
	return toErrno(unix.Fsync(fd))
}

var _ = (fs.NodeAllocater)((*node)(nil))

func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	if !n.u.writable {
		return syscall.EROFS
	}
	if err := n.copyUp(false); err != nil {
		return toErrno(err)
	}
	n.io.RLock()
	defer n.io.RUnlock()
	fd, done, err := n.dataFdLocked(true)
	if err != nil {
		return toErrno(err)
	}
	defer done()
	err = unix.Fallocate(fd, mode, int64(off), int64(size))
	n.notifyTwin()
	return toErrno(err)
}

var _ = (fs.NodeSetattrer)((*node)(nil))

// Setattr copies the node up and changes it there: mode, owner, size,
// times, in the order chmod/chown/truncate/utimes would; each through an
// O_PATH descriptor of the upper file (see pathFd), never by name.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.u.writable {
		return syscall.EROFS
	}
	if err := n.settableOwner(in); err != nil {
		return toErrno(err)
	}
	size, hasSize := in.GetSize()
	if err := n.copyUp(hasSize && size == 0); err != nil {
		return toErrno(err)
	}
	pfd, st, err := n.pathFd(n.topLayer())
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(pfd)
	if err := n.setattrFd(pfd, &st, in); err != nil {
		return toErrno(err)
	}
	n.notifyTwin()
	out.SetTimeout(cacheTimeout)
	return n.Getattr(ctx, f, out)
}

// setattrFd applies in to the node's upper copy, open at the O_PATH
// descriptor pfd, which st describes.
func (n *node) setattrFd(pfd int, st *unix.Stat_t, in *fuse.SetAttrIn) error {
	m, okMode := in.GetMode()
	if okMode {
		if err := chmodFd(pfd, m); err != nil {
			return err
		}
	}
	_, okU := in.GetUID()
	_, okG := in.GetGID()
	// A SETATTR that changes nothing (but ctime) is chown(-1, -1),
	// which still drops set-id bits and file capabilities (Linux:
	// fs/open.c:chown_common); with FUSE_HANDLE_KILLPRIV_V2 that is
	// the filesystem's to do, and chown(2) of the copy does it.
	nothing := in.Valid&^(fuse.FATTR_CTIME|fuse.FATTR_FH|fuse.FATTR_LOCKOWNER) == 0
	if okU || okG || nothing {
		u, g, err := n.u.diskOwner(setattrOwner(in))
		if err != nil {
			return err
		}
		if err := chownFd(pfd, u, g); err != nil {
			return err
		}
	}
	if size, ok := in.GetSize(); ok {
		n.io.RLock()
		fd, done, err := n.dataFdLocked(true)
		if err == nil {
			err = unix.Ftruncate(fd, int64(size))
			done()
		}
		n.io.RUnlock()
		if err != nil {
			return err
		}
	}
	if !okMode && in.Valid&fuse.FATTR_KILL_SUIDGID != 0 {
		// A truncate or chown by a caller without CAP_FSETID
		// (FUSE_HANDLE_KILLPRIV_V2): drop the set-id bits as the
		// kernel's own would; the daemon's truncate would not.
		if err := unix.Fstat(pfd, st); err != nil {
			return err
		}
		if mode, kill := killSuidgidMode(st.Mode); kill && st.Mode&unix.S_IFMT == unix.S_IFREG {
			if err := chmodFd(pfd, mode&0o7777); err != nil {
				return err
			}
		}
	}
	atime, okA := in.GetATime()
	mtime, okM := in.GetMTime()
	if okA || okM {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if okA {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if okM {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		return utimesFd(pfd, ts)
	}
	return nil
}
