package layer

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Whiteouts says which of the kernel's two whiteout forms a layer gets.
type Whiteouts int

const (
	// DeviceWhiteouts: a 0/0 character device, what the kernel writes.
	DeviceWhiteouts Whiteouts = iota
	// XattrWhiteouts: a zero-size regular file with the xattr
	// overlay.whiteout, in a directory whose overlay.opaque is "x"
	// (Linux 6.7+, Documentation/filesystems/overlayfs.rst "Nesting
	// overlayfs mounts"), for a layer where a 0/0 device cannot be
	// stored: an ordinary user before Linux 5.8, or a layer on an
	// overlay mount (a CI job's container), which keeps 0/0 devices as
	// its own whiteouts. The kernel reads them in every lower layer but
	// the bottom one, which is where a kept layer goes; through an
	// overlay the xattrs travel escaped (overlay.overlay.*) and read back
	// as written.
	XattrWhiteouts
)

func (w Whiteouts) String() string {
	if w == XattrWhiteouts {
		return "xattr whiteouts (overlay.whiteout files, read by Linux 6.7+)"
	}
	return "0/0 character devices"
}

// Writer writes deletions and opaque directories into a layer, in the
// kernel's format.
type Writer struct {
	// NS is where overlay xattrs go.
	NS Namespace
	// Whiteouts is the form of whiteout written (ProbeWhiteouts).
	Whiteouts Whiteouts
	// Shared, if set, makes device whiteouts hard links to one device.
	Shared *SharedWhiteout
}

// Whiteout records in the layer directory dirfd that name, which must not
// exist there, is deleted. An xattr whiteout needs no whiteout in a
// directory already opaque, where nothing below shows: none is written.
func (w Writer) Whiteout(dirfd int, name string) error {
	if w.Whiteouts == XattrWhiteouts {
		return writeXattrWhiteout(dirfd, name, w.NS)
	}
	if w.Shared != nil {
		if linked, err := w.Shared.link(dirfd, name); linked {
			return err
		}
	}
	if err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("whiteout %s: mknod: %w", name, err)
	}
	return nil
}

// PrepareDir readies the layer directory dirfd to hold a whiteout made
// elsewhere and moved in (fusefs builds one in its work directory and
// exchanges it with the entry it replaces): an xattr whiteout needs its
// directory marked overlay.opaque = "x".
func (w Writer) PrepareDir(dirfd int) error {
	if w.Whiteouts != XattrWhiteouts {
		return nil
	}
	_, err := markXattrWhiteouts(dirfd, w.NS)
	return err
}

// Opaque marks the layer directory open at dirfd opaque (MakeOpaque).
func (w Writer) Opaque(dirfd int) error { return MakeOpaque(dirfd, w.NS) }

// MakeWhiteout records in the layer directory dirfd that name, which must
// not exist there, is deleted: a 0/0 character device, as the kernel
// writes, or, where such a device cannot be stored there (mknod refused,
// the directory on an overlay mount, a device that vanishes into a union
// below), an xattr whiteout in namespace ns (XattrWhiteouts). A writer of
// many whiteouts decides once instead (ProbeWhiteouts, Writer).
func MakeWhiteout(dirfd int, name string, ns Namespace) error {
	w := Writer{NS: ns}
	if onOverlay(dirfd) {
		w.Whiteouts = XattrWhiteouts
		return w.Whiteout(dirfd, name)
	}
	err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0)
	if errors.Is(err, unix.EPERM) {
		w.Whiteouts = XattrWhiteouts
		return w.Whiteout(dirfd, name)
	}
	if err != nil {
		return fmt.Errorf("whiteout %s: mknod: %w", name, err)
	}
	var st unix.Stat_t
	if errors.Is(unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW), unix.ENOENT) {
		w.Whiteouts = XattrWhiteouts // taken by a union below for its own
		return w.Whiteout(dirfd, name)
	}
	return nil
}

// ProbeWhiteouts finds which whiteouts a layer kept in the directory
// dirfd (or on its filesystem, as a work directory is) gets, by making a
// 0/0 device there: DeviceWhiteouts where it can be made and stays one,
// XattrWhiteouts otherwise, with why in words. The error is for a probe
// that could not be made at all.
func ProbeWhiteouts(dirfd int) (Whiteouts, string, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(dirfd, &sfs); err != nil {
		return DeviceWhiteouts, "", fmt.Errorf("statfs: %w", err)
	}
	if sfs.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return XattrWhiteouts, "the layer directory is on an overlay mount, which refuses 0/0 devices: they are its own whiteouts", nil
	}
	name := fmt.Sprintf(".ovl-whiteout-probe-%d-%d", os.Getpid(), probeSeq.Add(1))
	err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0)
	if errors.Is(err, unix.EPERM) {
		return XattrWhiteouts, mknodRefused(), nil
	}
	if err != nil {
		return DeviceWhiteouts, "", fmt.Errorf("mknod a 0/0 device: %w", err)
	}
	defer unix.Unlinkat(dirfd, name, 0)
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || !IsWhiteoutDevice(st.Mode, st.Rdev) {
		return XattrWhiteouts, "a 0/0 device made in the layer directory did not stay one: a union filesystem there takes it for its own whiteout", nil
	}
	return DeviceWhiteouts, "", nil
}

var probeSeq atomic.Uint64

// mknodRefused says why mknod of a 0/0 device was refused with EPERM.
func mknodRefused() string {
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		var major, minor int
		if n, _ := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); n == 2 && (major < 5 || major == 5 && minor < 8) {
			return fmt.Sprintf("mknod of a 0/0 device was refused: without CAP_MKNOD that needs Linux 5.8 (this is %d.%d)", major, minor)
		}
	}
	return "mknod of a 0/0 device was refused (EPERM) by the layer directory's filesystem or a security policy"
}

// onOverlay reports whether the directory dirfd is on an overlay mount.
func onOverlay(dirfd int) bool {
	var sfs unix.Statfs_t
	return unix.Fstatfs(dirfd, &sfs) == nil && sfs.Type == unix.OVERLAYFS_SUPER_MAGIC
}

// writeXattrWhiteout makes name in the layer directory dirfd an xattr
// whiteout in ns. Its directory is marked overlay.opaque = "x" first
// (unless it is opaque, where no whiteout is needed); then the file is
// built unnamed (O_TMPFILE) with its xattr and linked in, so no plain
// empty file ever shows at name; where the filesystem has no O_TMPFILE it
// is created at name and removed again if the xattr cannot be set.
func writeXattrWhiteout(dirfd int, name string, ns Namespace) error {
	op, err := markXattrWhiteouts(dirfd, ns)
	if err != nil || op == OpaqueDir {
		return err
	}
	key := ns.Xattr(KeyWhiteout)
	fd, err := unix.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		defer unix.Close(fd)
		if err := unix.Fsetxattr(fd, key, nil, 0); err != nil {
			return fmt.Errorf("whiteout %s: set %s: %w", name, key, err)
		}
		if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), dirfd, name, unix.AT_SYMLINK_FOLLOW); err != nil {
			return fmt.Errorf("whiteout %s: link: %w", name, err)
		}
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("whiteout %s: %w", name, err)
	}
	fd, err = unix.Openat(dirfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("whiteout %s: %w", name, err)
	}
	err = unix.Fsetxattr(fd, key, nil, 0)
	unix.Close(fd)
	if err != nil {
		unix.Unlinkat(dirfd, name, 0)
		return fmt.Errorf("whiteout %s: set %s: %w", name, key, err)
	}
	return nil
}

// markXattrWhiteouts marks the layer directory dirfd (O_PATH will do) as
// one that may hold xattr whiteouts, overlay.opaque = "x" in ns, unless
// it is opaque ("y"). It returns what the directory is now.
func markXattrWhiteouts(dirfd int, ns Namespace) (Opacity, error) {
	p, key := fdPath(dirfd, "."), ns.Xattr(KeyOpaque)
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(p, key, buf)
	switch {
	case err == nil && string(buf[:n]) == "y":
		return OpaqueDir, nil
	case err == nil && string(buf[:n]) == "x":
		return HasXattrWhiteouts, nil
	case err != nil && !errors.Is(err, unix.ENODATA):
		return Transparent, fmt.Errorf("read %s: %w", key, err)
	}
	if err := unix.Lsetxattr(p, key, []byte("x"), 0); err != nil {
		return Transparent, fmt.Errorf("set %s to x (a directory with xattr whiteouts): %w", key, err)
	}
	return HasXattrWhiteouts, nil
}

// MakeOpaque marks the layer directory open at dirfd opaque: its
// overlay.opaque xattr in ns is "y". The kernel's format has no other
// way, so where that xattr is refused the error says why. xattr whiteouts
// the directory held go: once it is opaque they mean nothing, and the
// kernel would show them as files. dirfd must be a real (not O_PATH)
// descriptor.
func MakeOpaque(dirfd int, ns Namespace) error {
	var stale []string
	if op, _ := (Reader{NS: []Namespace{ns}}).Opacity(dirfd); op == HasXattrWhiteouts {
		ents, _, err := Reader{NS: []Namespace{ns}}.ReadDir(dirfd)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.Kind == Whiteout {
				stale = append(stale, e.Name)
			}
		}
	}
	err := unix.Fsetxattr(dirfd, ns.Xattr(KeyOpaque), []byte("y"), 0)
	switch {
	case err == nil:
		for _, name := range stale {
			if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove the whiteout %s of a directory made opaque: %w", name, err)
			}
		}
		return nil
	case errors.Is(err, unix.EPERM) && ns == Trusted:
		return fmt.Errorf("set %s: %w (trusted.overlay xattrs need CAP_SYS_ADMIN: a stack of an ordinary user keeps its metadata in user.overlay)", ns.Xattr(KeyOpaque), err)
	case errors.Is(err, unix.ENOTSUP):
		return fmt.Errorf("set %s: %w (the layer's filesystem keeps no %s xattrs: keep layers on ext4, xfs, btrfs or tmpfs)", ns.Xattr(KeyOpaque), err, ns)
	}
	return fmt.Errorf("set %s: %w", ns.Xattr(KeyOpaque), err)
}
