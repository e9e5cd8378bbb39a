package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// copyXattrs copies every xattr of src (a path whose last component is
// not followed: the entry of the copy's source in its directory, checked
// by copy-up to be the file it holds open) to the copy set writes to,
// except the overlay's own.
// An xattr the destination refuses outside the user namespace
// (security.*, trusted.* for an unprivileged daemon) is skipped, as the
// kernel does; a refused user.* xattr fails the copy.
func (u *unionFS) copyXattrs(src string, set func(name string, val []byte) error) error {
	names, err := layer.ListXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		if u.userXattr(name) == "" {
			continue
		}
		val, err := layer.GetXattr(src, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return err
		}
		if err := set(name, val); err != nil {
			if len(name) > 5 && name[:5] == "user." {
				return err
			}
			if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EACCES) {
				return err
			}
		}
	}
	return nil
}

// The stack's own namespace prefix ("trusted.overlay." or
// "user.overlay.") is private: names under it are the union's metadata.
// A user may still store such names: they are escaped on disk with one
// more "overlay." (Linux 6.7+: fs/overlayfs/xattrs.c, ovl_xattr_escape),
// so they never mean anything to a union. Names of the other namespace
// are ordinary xattrs, as in the kernel.

// realXattr maps a name the user gives to the name stored on disk.
func (u *unionFS) realXattr(name string) string { return u.ns.EscapeXattr(name) }

// userXattr maps a name stored on disk to the name the user sees, or ""
// for the union's own metadata.
func (u *unionFS) userXattr(name string) string { return u.ns.UnescapeXattr(name) }

// xattrPath calls fn with a path that reaches the node's visible copy
// without following a symlink at its end, for reading (a change goes
// through xattrFd).
func (n *node) xattrPath(fn func(path string) error) error {
	return n.at(n.topLayer(), func(dirfd int, name string) error {
		return fn(procPathAt(dirfd, name))
	})
}

var _ = (fs.NodeGetxattrer)((*node)(nil))

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	attr = n.u.realXattr(attr)
	var sz int
	err := n.xattrPath(func(p string) error {
		var err error
		sz, err = unix.Lgetxattr(p, attr, dest)
		return err
	})
	if err == nil && sz > 0 && sz <= len(dest) {
		n.shownACL(attr, dest[:sz])
	}
	return uint32(max(sz, 0)), toErrno(err)
}

var _ = (fs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var names []string
	err := n.xattrPath(func(p string) error {
		var err error
		names, err = layer.ListXattrs(p)
		return err
	})
	if err != nil {
		return 0, toErrno(err)
	}
	var buf []byte
	for _, name := range names {
		if un := n.u.userXattr(name); un != "" {
			buf = append(append(buf, un...), 0)
		}
	}
	if len(dest) == 0 {
		return uint32(len(buf)), 0
	}
	if len(dest) < len(buf) {
		return uint32(len(buf)), syscall.ERANGE
	}
	return uint32(copy(dest, buf)), 0
}

var _ = (fs.NodeSetxattrer)((*node)(nil))

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !n.u.writable {
		return syscall.EROFS
	}
	attr = n.u.realXattr(attr)
	data, err := n.u.diskACL(attr, data)
	if err != nil {
		return toErrno(err)
	}
	if err := n.copyUp(false); err != nil {
		return toErrno(err)
	}
	return toErrno(n.xattrFd(func(p string) error {
		return unix.Setxattr(p, attr, data, int(flags))
	}))
}

// xattrFd calls fn with the /proc name of an O_PATH descriptor of the
// node's visible copy (see pathFd), which the plain (following) xattr
// calls take to that file and no further: a change never reaches
// another file by a name swapped meanwhile.
func (n *node) xattrFd(fn func(path string) error) error {
	fd, _, err := n.pathFd(n.topLayer())
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(procPath(fd))
}

var _ = (fs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if !n.u.writable {
		return syscall.EROFS
	}
	attr = n.u.realXattr(attr)
	if !n.inUpper() {
		// Nothing to remove means no copy-up, as in the kernel.
		err := n.xattrPath(func(p string) error {
			_, err := unix.Lgetxattr(p, attr, nil)
			return err
		})
		if err != nil {
			return toErrno(err)
		}
		if err := n.copyUp(false); err != nil {
			return toErrno(err)
		}
	}
	return toErrno(n.xattrFd(func(p string) error { return unix.Removexattr(p, attr) }))
}
