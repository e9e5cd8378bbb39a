package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// hitKind says what a walk down the layers found for one name.
type hitKind int

const (
	// hitNone: no layer has the name.
	hitNone hitKind = iota
	// hitWhiteout: a layer deletes the name; nothing below shows.
	hitWhiteout
	// hitFile: a non-directory, in exactly one layer.
	hitFile
	// hitDir: a directory, merged from one or more layers.
	hitDir
)

// layerHit is the typed result of looking a name up through the layers
// of a directory.
type layerHit struct {
	kind hitKind
	// layers holds the layers of the hit, top-first (see node.layers).
	layers  []int
	dirFds  []int // for hitDir: open descriptors parallel to layers, -1 if not kept
	opacity []layer.Opacity
	st      unix.Stat_t // the top copy
	bottom  unix.Stat_t // for hitDir: the bottom-most copy, which names the inode
	// originIno, when set, is the number of the lower file an upper
	// non-directory was copied up from in an earlier mount (originIno).
	originIno uint64
	name      string // the name looked up
	// upperWhiteout is set when the name is a whiteout in the upper layer
	// itself, so a create must replace it.
	upperWhiteout bool
}

// closeFds closes the descriptors a hit holds when it is not turned into
// a node.
func (h *layerHit) closeFds(u *unionFS) {
	for i, fd := range h.dirFds {
		if fd >= 0 {
			unix.Close(fd)
			u.dirFds.Add(-1)
			h.dirFds[i] = -1
		}
	}
}

// lookupChild walks name down the layers of directory d, skipping the
// upper when lowerOnly is set (to ask "would deleting this name need a
// whiteout?").
func (d *node) lookupChild(name string, lowerOnly bool) (layerHit, error) {
	h := layerHit{name: name}
	d.mu.Lock()
	layers := append([]int(nil), d.layers...)
	opac := append([]layer.Opacity(nil), d.opacity...)
	d.mu.Unlock()
	for i, li := range layers {
		if lowerOnly && d.u.isUpper(li) {
			continue
		}
		if !d.lowerMayHave(li, name) {
			continue
		}
		r, err := d.dirFd(li)
		if err != nil {
			h.closeFds(d.u)
			return h, err
		}
		var st unix.Stat_t
		err = unix.Fstatat(r.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			// An OCI whiteout file hides name too.
			var wst unix.Stat_t
			if werr := unix.Fstatat(r.fd, layer.WhiteoutPrefix+name, &wst, unix.AT_SYMLINK_NOFOLLOW); werr == nil {
				if k, _ := layer.Classify(r.fd, layer.WhiteoutPrefix+name, &wst, opac[i], d.u.ns); k == layer.Whiteout {
					r.release()
					if h.kind == hitNone {
						h.kind = hitWhiteout
						h.upperWhiteout = d.u.isUpper(li)
					}
					return h, nil
				}
			}
			r.release()
			continue
		}
		if err != nil {
			r.release()
			h.closeFds(d.u)
			return h, err
		}
		kind, _ := layer.Classify(r.fd, name, &st, opac[i], d.u.ns)
		switch kind {
		case layer.Opaque, layer.Meta:
			// Bookkeeping entries are never names of the tree.
			r.release()
			if h.kind == hitNone {
				h.kind = hitWhiteout
			}
			return h, nil
		case layer.Whiteout:
			r.release()
			if h.kind == hitNone {
				h.kind = hitWhiteout
				h.upperWhiteout = d.u.isUpper(li)
			}
			return h, nil
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if h.kind == hitDir && !isDir {
			// A non-directory below a directory is hidden by it.
			r.release()
			return h, nil
		}
		if !isDir {
			if d.u.isUpper(li) {
				h.originIno, _ = d.u.originIno(r.fd, name, st.Mode&unix.S_IFMT, devIno{st.Dev, st.Ino})
			}
			r.release()
			h.kind, h.layers, h.st = hitFile, []int{li}, st
			return h, nil
		}
		// A directory: keep its descriptor while the budget allows, and
		// read its opacity to know whether to look further down.
		fd, err := openDirAt(r.fd, name)
		r.release()
		if err != nil {
			h.closeFds(d.u)
			return h, err
		}
		op, err := layer.DirOpacity(fd, d.u.ns)
		if err != nil && !errors.Is(err, unix.EBADF) { // EBADF: an O_PATH fallback descriptor
			unix.Close(fd)
			h.closeFds(d.u)
			return h, err
		}
		if !d.u.keepDirFd() {
			unix.Close(fd)
			fd = -1
		}
		if h.kind == hitNone {
			h.kind, h.st = hitDir, st
		}
		h.layers = append(h.layers, li)
		h.dirFds = append(h.dirFds, fd)
		h.opacity = append(h.opacity, op)
		h.bottom = st
		if op == layer.OpaqueDir {
			return h, nil
		}
	}
	return h, nil
}

// maxIndexedNames bounds the names indexed per (layer, directory):
// bigger directories are probed name by name instead.
const maxIndexedNames = 50000

// nameMax is Linux's NAME_MAX, the longest name a directory entry has.
const nameMax = 255

// lowerMayHave reports whether lower layer li's copy of directory d may
// hold name or a ".wh." whiteout of it; false means lookupChild can skip
// the layer without a system call. The first call per layer reads that
// layer's directory once into d.lowerNames; later calls are a map lookup.
// A name longer than nameMax is probed too, so the layer answers
// ENAMETOOLONG as it would without the index.
// This is safe because lower layers are immutable while mounted, so the
// listing cannot go stale; the upper, which changes, is never indexed
// (true is returned for it). A directory over maxIndexedNames, or one
// that cannot be read, is recorded unindexed and always probed. The
// index goes with the node when the kernel forgets it (OnForget).
func (d *node) lowerMayHave(li int, name string) bool {
	if d.u.isUpper(li) || len(name) > nameMax {
		return true
	}
	d.mu.Lock()
	names, ok := d.lowerNames[li]
	d.mu.Unlock()
	if !ok {
		names = d.indexLower(li)
	}
	if names == nil {
		return true
	}
	if _, ok := names[name]; ok {
		return true
	}
	_, ok = names[layer.WhiteoutPrefix+name]
	return ok
}

// indexLower reads lower layer li's copy of d into a name set and records
// it (nil: not indexed) in d.lowerNames.
func (d *node) indexLower(li int) map[string]struct{} {
	var names map[string]struct{}
	if r, err := d.dirFd(li); err == nil {
		entries, _, err := layer.ReadDir(r.fd, d.u.ns)
		r.release()
		if err == nil && len(entries) <= maxIndexedNames {
			names = make(map[string]struct{}, len(entries))
			for _, e := range entries {
				names[e.Name] = struct{}{}
			}
		}
	}
	d.mu.Lock()
	if d.lowerNames == nil {
		d.lowerNames = make(map[int]map[string]struct{})
	}
	d.lowerNames[li] = names
	d.mu.Unlock()
	return names
}

// newChild turns a hit into the child Inode of d. The identity is the
// inode number plus, for a non-directory, the layer it came from (its
// origin, after copy-up) as generation: a file hard-linked across layers
// is two files of the union, as in the kernel's. The bridge reuses the
// Inode it already has for the same identity.
func (d *node) newChild(ctx context.Context, h *layerHit) *fs.Inode {
	var id fs.StableAttr
	id.Mode = h.st.Mode & unix.S_IFMT
	if h.kind == hitDir {
		id.Ino = d.u.ino(h.bottom.Dev, h.bottom.Ino)
	} else {
		id.Ino, id.Gen = d.u.fileID(&h.st, h.layers[0], d.ino, h.name)
		if h.originIno != 0 {
			id.Ino = h.originIno
		}
		id.Gen = d.u.freeGen(id, h.layers[0])
	}
	if old := d.GetChild(h.name); old != nil && old.StableAttr() == id {
		// Known already: keep the existing node, drop what we opened.
		h.closeFds(d.u)
		return old
	}
	if h.kind != hitDir {
		if v, ok := d.u.known.Load(id); ok && !v.(*node).Forgotten() {
			// Another name of a live file (a hard link): the bridge
			// would pick that node over a new one anyway, and it is
			// the one whose twin and state count.
			h.closeFds(d.u)
			return v.(*node).EmbeddedInode()
		}
	}
	n := newNode(d.u, id.Ino, h.kind == hitDir, h.layers)
	n.gen = id.Gen
	n.dirFds, n.opacity = h.dirFds, h.opacity
	d.u.known.Store(id, n)
	if h.kind != hitDir && d.u.isUpper(h.layers[0]) {
		if v, ok := d.u.renumbered.Load(devIno{h.st.Dev, h.st.Ino}); ok {
			linkTwins(n, v.(*node))
		}
	}
	return d.NewInode(ctx, n, id)
}

var _ = (fs.NodeLookuper)((*node)(nil))

func (d *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	h, err := d.lookupChild(name, false)
	if err != nil {
		return nil, toErrno(err)
	}
	if h.kind == hitNone || h.kind == hitWhiteout {
		return nil, syscall.ENOENT
	}
	child := d.newChild(ctx, &h)
	cn := child.Operations().(*node)
	cn.fillAttr(&h.st, &out.Attr)
	return child, 0
}
