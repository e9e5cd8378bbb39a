// Package beneath opens paths inside a directory without ever leaving
// it, wherever the symlinks of the tree point: what ovl does with trees
// whose contents an untrusted author chose (the files of a project a
// build reads, the entries of a tarball it unpacks).
package beneath

import (
	"errors"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Symlinks says what Open does with a symlink on the way to the last
// component.
type Symlinks int

const (
	// NoSymlinks refuses every symlink on the way (ELOOP).
	NoSymlinks Symlinks = iota
	// Inside follows a relative symlink that resolves inside the
	// directory and refuses one that leads out of it or is absolute
	// (EXDEV).
	Inside
)

var noOpenat2 atomic.Bool // set once openat2 answered ENOSYS

// Open opens rel, a slash-separated path relative to the directory open
// at dirfd, with flags (O_CLOEXEC added), resolving it inside that
// directory only: ".." never climbs above it, and symlinks are handled
// as links says. The last component is followed only if it is a symlink
// links allows and flags has no O_NOFOLLOW. It uses openat2 with
// RESOLVE_BENEATH (Linux 5.6+); on older kernels it walks one component
// at a time with O_NOFOLLOW, which refuses every symlink whatever links
// says. A path that would leave the directory fails with EXDEV.
func Open(dirfd int, rel string, flags int, links Symlinks) (int, error) {
	flags |= unix.O_CLOEXEC
	rel = strings.Trim(rel, "/")
	if rel == "" || rel == "." {
		return unix.Openat(dirfd, ".", flags, 0)
	}
	if !noOpenat2.Load() {
		resolve := uint64(unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS)
		if links == NoSymlinks {
			resolve |= unix.RESOLVE_NO_SYMLINKS
		}
		how := &unix.OpenHow{Flags: uint64(flags), Resolve: resolve}
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
		fl := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			fl = flags | unix.O_NOFOLLOW
		}
		var fd int
		var err error
		if p == ".." || p == "" || p == "." {
			fd, err = -1, unix.EXDEV
		} else {
			fd, err = unix.Openat(cur, p, fl, 0)
		}
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
