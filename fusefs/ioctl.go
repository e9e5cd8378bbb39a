package fusefs

import (
	"context"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// File attributes (lsattr, chattr, xfs_io's chattr): the kernel sends
// FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IOC_FSGETXATTR and
// FS_IOC_FSSETXATTR as FUSE_IOCTL (Linux: fs/fuse/ioctl.c
// fuse_fileattr_get/set) after checking the caller may (owner, and
// CAP_LINUX_IMMUTABLE for the append-only and immutable flags). The
// union passes them to the file's visible copy, and a change to its
// upper copy, copied up first, as the kernel's overlay does (Linux:
// fs/overlayfs/inode.c ovl_fileattr_get/set).

const (
	// fsIocFsGetXattr and fsIocFsSetXattr are FS_IOC_FSGETXATTR and
	// FS_IOC_FSSETXATTR: _IOR/_IOW('X', 31/32, struct fsxattr).
	fsIocFsGetXattr = 0x801c581f
	fsIocFsSetXattr = 0x401c5820
	// fsxattrSize is sizeof(struct fsxattr).
	fsxattrSize = 28
	// flagsSize is the size of FS_IOC_GETFLAGS's value: an int, though
	// the command's encoding says long (Linux: fs/ioctl.c ioctl_getflags).
	flagsSize = 4
)

var _ = (fs.NodeIoctler)((*node)(nil))

func (n *node) Ioctl(ctx context.Context, f fs.FileHandle, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	var size int
	set := false
	switch cmd {
	case unix.FS_IOC_GETFLAGS:
		size = flagsSize
	case unix.FS_IOC_SETFLAGS:
		size, set = flagsSize, true
	case fsIocFsGetXattr:
		size = fsxattrSize
	case fsIocFsSetXattr:
		size, set = fsxattrSize, true
	default:
		return 0, syscall.ENOTTY
	}
	if t := n.fileType(); t != unix.S_IFREG && t != unix.S_IFDIR {
		return 0, syscall.ENOTTY
	}
	buf := make([]byte, size)
	if set {
		if len(input) < size {
			return 0, syscall.EINVAL
		}
		copy(buf, input)
		if !n.u.writable {
			return 0, syscall.EROFS
		}
		if err := n.copyUp(false); err != nil {
			return 0, toErrno(err)
		}
	} else if len(output) < size {
		return 0, syscall.EINVAL
	}
	fd, err := n.openAttrFd()
	if err != nil {
		return 0, toErrno(err)
	}
	defer unix.Close(fd)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(cmd), uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return 0, e
	}
	if !set {
		copy(output, buf)
		return 0, 0
	}
	n.notifyAttr() // ctime, and S_APPEND/S_IMMUTABLE, changed
	return 0, 0
}

// openAttrFd opens the node's visible copy, a regular file or a
// directory, read-only, to ask or change its file attributes: through a
// checked O_PATH descriptor (see pathFd), never by a name swapped
// meanwhile for a device or fifo.
func (n *node) openAttrFd() (int, error) {
	pfd, _, err := n.pathFd(n.topLayer())
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	flags := unix.O_RDONLY
	if n.isDir {
		flags |= unix.O_DIRECTORY
	}
	return reopen(pfd, flags)
}
