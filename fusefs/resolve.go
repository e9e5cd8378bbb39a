package fusefs

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"

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

var noOpenat2 atomic.Bool // set once openat2 answered ENOSYS

// openBeneath opens rel, a slash-separated path inside the directory open
// at dirfd, without following any symlink and without leaving the
// directory: openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the
// kernel has it (5.6+), one O_NOFOLLOW component at a time otherwise.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	if rel == "" || rel == "." {
		return unix.Openat(dirfd, ".", flags|unix.O_CLOEXEC, 0)
	}
	if !noOpenat2.Load() {
		how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
		for {
			fd, err := unix.Openat2(dirfd, rel, how)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if !errors.Is(err, unix.ENOSYS) {
				return fd, err
			}
			noOpenat2.Store(true)
			break
		}
	}
	parts := strings.Split(rel, "/")
	cur := dirfd
	for i, p := range parts {
		if p == ".." || p == "" || p == "." {
			if cur != dirfd {
				unix.Close(cur)
			}
			return -1, unix.EXDEV
		}
		fl := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			fl = flags | unix.O_NOFOLLOW | unix.O_CLOEXEC
		}
		fd, err := unix.Openat(cur, p, fl, 0)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// splitPath splits rel into its directory (maybe "") and last component.
func splitPath(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}
