package fusefs

import (
	"strconv"
	"strings"

	"github.com/ovl-dev/ovl/internal/beneath"
	"golang.org/x/sys/unix"
)

// fdRef is a descriptor that is either borrowed from a cache (owned ==
// false) or opened for one operation and closed by release.
type fdRef struct {
	fd    int
	owned bool
}

func (r fdRef) release() {
	if r.owned {
		unix.Close(r.fd)
	}
}

// procPath names descriptor fd through /proc, to reach the file an O_PATH
// descriptor refers to with calls that take no descriptor (xattrs on
// symlinks, utimes). The kernel resolves it to the file itself and
// follows no symlink beyond it.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// procPathAt names entry name of the directory open at dirfd.
func procPathAt(dirfd int, name string) string { return procPath(dirfd) + "/" + name }

// openPathAt opens entry name of dirfd as an O_PATH descriptor, never
// following a symlink, and stats it. With typ (S_IFMT bits) not 0 the
// entry must be a file of that type: one swapped behind the union's back
// for another kind of file (a symlink, a fifo, a device) is ESTALE, the
// file the union knew being gone. Every change to an existing file goes
// through such a descriptor (see reopen), so a layer entry swapped for a
// symlink never redirects it outside the layers.
func openPathAt(dirfd int, name string, typ uint32) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	if typ != 0 && st.Mode&unix.S_IFMT != typ {
		unix.Close(fd)
		return -1, st, unix.ESTALE
	}
	return fd, st, nil
}

// reopen opens the regular file that the O_PATH descriptor fd refers to
// with flags, through its /proc name: the kernel resolves that to the
// descriptor's own file and follows nothing beyond it.
func reopen(fd int, flags int) (int, error) {
	return unix.Open(procPath(fd), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
}

// chmodFd changes the mode of the file the O_PATH descriptor fd refers
// to (fchmod refuses O_PATH descriptors; fchmodat2's AT_EMPTY_PATH needs
// Linux 6.6): through its /proc name, which reaches that file and
// nothing beyond it. A symlink's mode cannot change (EOPNOTSUPP).
func chmodFd(fd int, mode uint32) error {
	return unix.Fchmodat(unix.AT_FDCWD, procPath(fd), mode, 0)
}

// chownFd changes the owner of the file the O_PATH descriptor fd refers
// to (-1 leaves an id as it is).
func chownFd(fd, uid, gid int) error {
	return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH)
}

// utimesFd sets the times of the file the O_PATH descriptor fd refers
// to, a symlink included.
func utimesFd(fd int, ts []unix.Timespec) error {
	return unix.UtimesNanoAt(unix.AT_FDCWD, procPath(fd), ts, 0)
}

// openBeneath opens rel, a slash-separated path inside the directory open
// at dirfd, without following any symlink (the last component's
// included) and without leaving the directory.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	return beneath.Open(dirfd, rel, flags|unix.O_NOFOLLOW, beneath.NoSymlinks)
}

// splitPath splits rel into its directory (maybe "") and last component.
func splitPath(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}
