package fusefs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// node is one file or directory of the merged tree.
type node struct {
	fs.Inode
	u *unionFS

	ino   uint64 // immutable: the inode number the union shows
	gen   uint64 // immutable: the generation (see newChild)
	isDir bool   // immutable

	// mu protects the fields below.
	mu sync.Mutex
	// layers lists the layers (indexes into unionFS.layers) holding this
	// node, top-first. A non-directory has exactly one; a directory has
	// every layer that merges into it, cut below an opaque one. Only
	// copy-up changes it, by putting the upper in front.
	layers []int
	// dirFds are directory descriptors parallel to layers (directories
	// only), -1 where not cached.
	dirFds []int
	// opacity is each directory layer's layer.Opacity, parallel to layers.
	opacity []layer.Opacity
	// orphan, for a file unlinked while the kernel still knew it, is
	// where its data is still reachable: orphanLayer is a layer index, or
	// -1 for the work directory.
	orphan      string
	orphanLayer int
	// listing is the directory's listing as of its last read (see
	// currentListing); nil when no read is in progress.
	listing *dirListing
	// lowerNames indexes the names in each lower layer's copy of this
	// directory (see node.lowerMayHave); nil until the first lookup.
	lowerNames map[int]map[string]struct{}
	// cachedOpens counts open handles that do not use passthrough, which
	// the kernel will not mix with passthrough ones.
	cachedOpens int

	// io is held shared while a data descriptor of this node is in use,
	// and exclusively by copy-up when it moves the data to the upper.
	io sync.RWMutex
	// data caches read (and, for upper files, write) descriptors; nil
	// until the first read or write. Protected by io (swap) and dataMu.
	dataMu sync.Mutex
	rfd    int // -1 when not open
	wfd    int // -1 when not open

	// upperID is the upper (dev, ino) of a lower hard link copied up
	// through this node, which then lives on under a new number (see
	// unionFS.renumbered); zero otherwise. Set under io and mu by copy-up.
	upperID devIno

	// listGen counts changes to the names of this directory (see
	// dirChanged), to tell a listing that is still current.
	listGen atomic.Uint64

	// pagesStale is set while the kernel's cached pages of this file are
	// known wrong (a write went elsewhere than where the kernel put it
	// in its cache) until they are dropped (dropStalePages).
	pagesStale atomic.Bool
	// dropping is held while the kernel is told to drop the pages, so
	// that a Getattr waits for an invalidation already under way.
	dropping sync.Mutex

	// impure is set once this directory's upper copy is known to carry
	// overlay.impure (see unionFS.markImpure), which nothing removes
	// while the stack is mounted.
	impure atomic.Bool

	// twin is the other node of the same upper file, when a lower hard
	// link was copied up through this one (or it is that one): the
	// kernel sees two inodes, so a change through one must drop what
	// it caches of the other. Nil otherwise.
	twin atomic.Pointer[node]

	// forgotten is set once the kernel has forgotten the node (OnForget).
	forgotten atomic.Bool
}

// linkTwins records that a and b are one upper file (node.twin).
func linkTwins(a, b *node) {
	a.twin.Store(b)
	b.twin.Store(a)
}

// notifyTwin makes the kernel forget the attributes and cached data of
// n's twin after a change through n.
func (n *node) notifyTwin() {
	if t := n.twin.Load(); t != nil {
		t.notifyAttr()
	}
}

func newNode(u *unionFS, ino uint64, isDir bool, layers []int) *node {
	return &node{u: u, ino: ino, isDir: isDir, layers: layers, rfd: -1, wfd: -1}
}

// topLayer returns the layer holding the node's visible copy.
func (n *node) topLayer() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.layers[0]
}

// inUpper reports whether the node's visible copy is in the upper layer.
func (n *node) inUpper() bool { return n.u.isUpper(n.topLayer()) }

// parentNode returns the node's parent and its name there, or nil for the
// root and for unlinked nodes.
func (n *node) parentNode() (*node, string) {
	name, p := n.Parent()
	if p == nil {
		return nil, ""
	}
	pn, _ := p.Operations().(*node)
	return pn, name
}

// dirFd returns a descriptor of this directory in layer li (which must be
// one of its layers), from the cache or freshly opened below the parent.
func (n *node) dirFd(li int) (fdRef, error) {
	n.mu.Lock()
	for i, l := range n.layers {
		if l == li && n.dirFds != nil && n.dirFds[i] >= 0 {
			fd := n.dirFds[i]
			n.mu.Unlock()
			return fdRef{fd: fd}, nil
		}
	}
	n.mu.Unlock()
	if n.IsRoot() {
		return fdRef{fd: n.u.layers[li].fd}, nil
	}
	p, name := n.parentNode()
	if p == nil {
		return fdRef{}, syscall.ESTALE
	}
	pfd, err := p.dirFd(li)
	if err != nil {
		return fdRef{}, err
	}
	defer pfd.release()
	fd, err := openDirAt(pfd.fd, name)
	if err != nil {
		return fdRef{}, err
	}
	return fdRef{fd: fd, owned: true}, nil
}

// openDirAt opens directory name of dirfd without following a symlink:
// for reading where allowed, as O_PATH otherwise.
func openDirAt(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		fd, err = unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	return fd, err
}

// at calls fn with a directory descriptor and a name that reach this
// node's copy in layer li. For a directory the name is ".".
func (n *node) at(li int, fn func(dirfd int, name string) error) error {
	n.mu.Lock()
	orphan, orphanLayer, alias := n.orphan, n.orphanLayer, n.upperID != (devIno{})
	n.mu.Unlock()
	return n.atWith(orphan, orphanLayer, alias, li, fn)
}

// atLocked is at for the node's top layer. Preconditions: n.mu held; n
// is not a directory.
func (n *node) atLocked(fn func(dirfd int, name string) error) error {
	return n.atWith(n.orphan, n.orphanLayer, n.upperID != (devIno{}), n.layers[0], fn)
}

// atWith is at with the node's state read: its orphan entry, and
// whether a lower hard link was copied up through it (alias).
func (n *node) atWith(orphan string, orphanLayer int, alias bool, li int, fn func(dirfd int, name string) error) error {
	if orphan != "" {
		root := n.u.workFd
		if orphanLayer >= 0 {
			root = n.u.layers[orphanLayer].fd
		}
		dir, base := splitPath(orphan)
		dfd := root
		if dir != "" {
			fd, err := openBeneath(root, dir, unix.O_PATH|unix.O_DIRECTORY)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			dfd = fd
		}
		return fn(dfd, base)
	}
	if n.isDir {
		r, err := n.dirFd(li)
		if err != nil {
			return err
		}
		defer r.release()
		return fn(r.fd, ".")
	}
	// A lower hard link copied up through n lives on as its twin once
	// the name has been looked up again; wherever the twin has moved
	// since, that is n's file (n's own parent link may be stale).
	if t := n.twin.Load(); t != nil && alias {
		return t.at(li, fn)
	}
	p, name := n.parentNode()
	if p == nil {
		return syscall.ESTALE
	}
	r, err := p.dirFd(li)
	if err != nil {
		return err
	}
	defer r.release()
	return fn(r.fd, name)
}

// fileType is the node's file type (S_IFMT bits), which never changes.
func (n *node) fileType() uint32 {
	if n.isDir {
		return unix.S_IFDIR
	}
	return n.Mode() & unix.S_IFMT
}

// pathFd opens the node's copy in layer li as an O_PATH descriptor that
// follows no symlink and is checked to be a file of the node's type (see
// openPathAt). The caller closes it.
func (n *node) pathFd(li int) (fd int, st unix.Stat_t, err error) {
	err = n.at(li, func(dirfd int, name string) error {
		var err error
		fd, st, err = openPathAt(dirfd, name, n.fileType())
		return err
	})
	return fd, st, err
}

// lstat stats the node's visible copy: ESTALE if it is no longer a file
// of the node's type (swapped behind the union's back).
func (n *node) lstat(st *unix.Stat_t) error {
	err := n.at(n.topLayer(), func(dirfd int, name string) error {
		return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err == nil && st.Mode&unix.S_IFMT != n.fileType() && n.fileType() != 0 {
		return unix.ESTALE
	}
	return err
}

// fillAttr converts a layer stat into what the union shows.
func (n *node) fillAttr(st *unix.Stat_t, out *fuse.Attr) {
	out.Ino = n.ino
	out.Size = uint64(st.Size)
	out.Blocks = uint64(st.Blocks)
	out.Atime, out.Atimensec = uint64(st.Atim.Sec), uint32(st.Atim.Nsec)
	out.Mtime, out.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
	out.Ctime, out.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
	out.Mode = st.Mode
	out.Nlink = uint32(st.Nlink)
	out.Uid, out.Gid = n.shownOwner(st)
	out.Rdev = uint32(st.Rdev)
	out.Blksize = uint32(st.Blksize)
	if !n.isDir {
		n.mu.Lock()
		deleted := n.orphan != "" && n.orphanLayer < 0
		n.mu.Unlock()
		if deleted {
			out.Nlink = 0 // unlinked, kept only for open descriptors
		}
	}
	if n.isDir {
		n.mu.Lock()
		merged := len(n.layers) > 1
		n.mu.Unlock()
		if merged {
			// Linux: fs/overlayfs/inode.c:ovl_getattr reports 1 for a
			// merged directory, whose real link count is unknowable.
			out.Nlink = 1
		}
	}
}

var _ = (fs.NodeGetattrer)((*node)(nil))

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.dropStalePages()
	var st unix.Stat_t
	if err := n.lstat(&st); err != nil {
		return toErrno(err)
	}
	n.fillAttr(&st, &out.Attr)
	return 0
}

var _ = (fs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	var target string
	err := n.at(n.topLayer(), func(dirfd int, name string) error {
		var err error
		target, err = readlinkAt(dirfd, name)
		return err
	})
	return []byte(target), toErrno(err)
}

var _ = (fs.NodeStatfser)((*node)(nil))

// Statfs reports the upper's filesystem (the top lower's on a read-only
// stack), as the kernel does.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st unix.Statfs_t
	if err := unix.Fstatfs(n.u.layers[0].fd, &st); err != nil {
		return toErrno(err)
	}
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Files, out.Ffree = st.Files, st.Ffree
	out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
	out.NameLen = uint32(st.Namelen)
	return 0
}

var _ = (fs.NodeOnForgetter)((*node)(nil))

// OnForget closes the descriptors the node cached and removes the data of
// an unlinked file that was kept in the work directory.
func (n *node) OnForget() {
	n.forgotten.Store(true)
	if !n.isDir {
		n.u.known.CompareAndDelete(fs.StableAttr{Mode: n.Mode(), Ino: n.ino, Gen: n.gen}, n)
	}
	if t := n.twin.Swap(nil); t != nil {
		t.twin.CompareAndSwap(n, nil) // the other is a file of its own again
	}
	n.mu.Lock()
	if n.upperID != (devIno{}) {
		n.u.renumbered.CompareAndDelete(n.upperID, n)
	}
	for i, fd := range n.dirFds {
		if fd >= 0 {
			unix.Close(fd)
			n.u.dirFds.Add(-1)
			n.dirFds[i] = -1
		}
	}
	orphan, orphanLayer := n.orphan, n.orphanLayer
	n.listing = nil
	n.lowerNames = nil
	n.mu.Unlock()
	n.closeDataLocked()
	if orphan != "" && orphanLayer < 0 && n.u.workFd >= 0 {
		unix.Unlinkat(n.u.workFd, orphan, 0)
	}
}

// toErrno converts an error of a system call or of this package to the
// errno FUSE returns. It is the only place that does.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return fs.ToErrno(err)
}
