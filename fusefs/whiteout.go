package fusefs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// whiteoutEntry records in upper directory updir that name is deleted,
// in the form of whiteout the upper takes (u.wr, decided at mount).
// When the upper has an entry of that name (upperEntry), it is replaced
// atomically: the whiteout is made in the work dir and exchanged with
// it, then the old entry is removed from the work dir (Linux:
// fs/overlayfs/dir.c:ovl_remove_and_whiteout). With keep, the old entry
// is not removed: its work-dir name is returned, for a file the kernel
// still has open.
func (u *unionFS) whiteoutEntry(updir int, name string, upperEntry, keep bool) (kept string, err error) {
	if !upperEntry {
		return "", u.wr.Whiteout(updir, name)
	}
	tmp := u.tmpName()
	if err := u.wr.Whiteout(u.workFd, tmp); err != nil {
		return "", err
	}
	if err := u.wr.PrepareDir(updir); err != nil {
		unix.Unlinkat(u.workFd, tmp, 0)
		return "", err
	}
	if err := unix.Renameat2(u.workFd, tmp, updir, name, unix.RENAME_EXCHANGE); err != nil {
		unix.Unlinkat(u.workFd, tmp, 0)
		return "", err
	}
	if keep {
		return tmp, nil
	}
	return "", u.removeWork(tmp)
}

// removeWork removes entry name of the work dir, recursively, never
// following a symlink.
func (u *unionFS) removeWork(name string) error {
	err := unix.Unlinkat(u.workFd, name, 0)
	if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
		err = os.RemoveAll(procPathAt(u.workFd, name))
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// makeOpaque marks the upper directory name of updir opaque.
func (u *unionFS) makeOpaque(updir int, name string) error {
	fd, err := unix.Openat(updir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return u.wr.Opaque(fd)
}

// clearWhiteouts empties upper directory name of updir, which holds only
// whiteouts and markers (its merged view is empty), so it can be replaced
// or removed.
func (u *unionFS) clearWhiteouts(updir int, name string) error {
	fd, err := unix.Openat(updir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ents, _, err := layer.ReadDir(fd, u.ns)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Kind == layer.Visible {
			return unix.ENOTEMPTY
		}
		if err := unix.Unlinkat(fd, e.Name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}
