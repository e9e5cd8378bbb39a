package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// bind mounts src (recursively) at target.
func bind(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", src, target, err)
	}
	return nil
}

// mountFS mounts a filesystem of type fstype (tmpfs, proc, devpts) at
// target.
func mountFS(fstype, target string, flags uintptr, data string) error {
	if err := unix.Mount(fstype, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s at %s (%s): %w", fstype, target, data, err)
	}
	return nil
}

// remountReadOnly makes the mount at target read-only, keeping the flags
// it has (in a user namespace, dropping a locked flag such as nosuid is
// refused). With recursive, every mount below target too.
func remountReadOnly(target string, recursive bool) error {
	if recursive {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		err := unix.MountSetattr(-1, target, unix.AT_RECURSIVE, attr)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("make %s read-only: %w", target, err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(target, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", target, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for st, ms := range map[int64]uintptr{
		unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
	} {
		if sfs.Flags&st != 0 {
			flags |= ms
		}
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// detach lazily unmounts target.
func detach(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// ErrNotInContainer reports a path that does not exist inside the
// container root, e.g. a volume's mountpoint in a read-only root.
var ErrNotInContainer = errors.New("no such directory in the container")

// resolveInRoot returns the host path of the container path p, resolving
// symlinks as if root were "/" so that nothing leads outside it. With
// create, missing directories are created (mode 0755).
func resolveInRoot(root, p string, create bool) (string, error) {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open container root %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	fd, err := openInRoot(rootfd, strings.TrimPrefix(filepath.Clean(p), "/"), create)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("%s: %w", p, ErrNotInContainer)
		}
		return "", fmt.Errorf("%s in the container: %w", p, err)
	}
	defer unix.Close(fd)
	real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", err
	}
	return real, nil
}

func openInRoot(rootfd int, rel string, create bool) (int, error) {
	if rel == "" || rel == "." {
		return unix.Openat(rootfd, ".", unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(rootfd, rel, how)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, err := openInRoot(rootfd, filepath.Dir(rel), create)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	// mkdirat needs a real path for an O_PATH descriptor's directory.
	dir, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", parent))
	if err != nil {
		return -1, err
	}
	if err := unix.Mkdir(filepath.Join(dir, filepath.Base(rel)), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return unix.Openat2(rootfd, rel, how)
}
