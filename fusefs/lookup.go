package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// layerHit is what a lookup of a name through the layers of a directory
// found (layer.Lookup), in the union's terms.
type layerHit struct {
	kind layer.HitKind
	// layers holds the layers of the hit, top-first (see node.layers).
	layers  []int
	dirFds  []int // for layer.HitDir: open descriptors parallel to layers, -1 if not kept
	opacity []layer.Opacity
	st      unix.Stat_t // the top copy
	bottom  unix.Stat_t // for layer.HitDir: the bottom-most copy, which names the inode
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

// layerStack is directory d's copies as the merge walk (layer.Lookup,
// layer.List) reads them: d's layers, top first, as they were when the
// walk began.
type layerStack struct {
	d       *node
	layers  []int
	opacity []layer.Opacity
	// lowerOnly leaves the upper out: "would deleting this name need a
	// whiteout?"
	lowerOnly bool
}

// stack returns d's layerStack.
func (d *node) stack(lowerOnly bool) *layerStack {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &layerStack{d: d, layers: append([]int(nil), d.layers...),
		opacity: append([]layer.Opacity(nil), d.opacity...), lowerOnly: lowerOnly}
}

func (s *layerStack) Len() int { return len(s.layers) }

// MayHold skips the upper for a lowerOnly walk, and a lower copy that
// the directory index says holds neither name nor a whiteout of it.
func (s *layerStack) MayHold(i int, name string) bool {
	li := s.layers[i]
	if s.lowerOnly && s.d.u.isUpper(li) {
		return false
	}
	return s.d.lowerMayHave(li, name)
}

// Dir returns copy i. An upper directory that gets xattr whiteouts is
// read as one that may hold some: the union marks it so when it writes
// the first (layer.Writer), after the node cached its opacity.
func (s *layerStack) Dir(i int) (layer.Dir, error) {
	li := s.layers[i]
	r, err := s.d.dirFd(li)
	op := s.opacity[i]
	if op == layer.Transparent && s.d.u.isUpper(li) && s.d.u.wr.Whiteouts == layer.XattrWhiteouts {
		op = layer.HasXattrWhiteouts
	}
	return layer.Dir{Fd: r.fd, Opacity: op, Format: s.d.u.layers[li].format, Owned: r.owned}, err
}

// reader reads layer li: in its format, honouring the overlay xattrs of
// the stack's namespace only, as a kernel mount does.
func (u *unionFS) reader(li int) layer.Reader {
	return layer.Reader{Format: u.layers[li].format, NS: []layer.Namespace{u.ns}}
}

// lookupChild walks name down the layers of directory d (layer.Lookup),
// skipping the upper when lowerOnly is set (to ask "would deleting this
// name need a whiteout?"). A directory hit keeps its layers' descriptors
// while the budget (keepDirFd) allows.
func (d *node) lookupChild(name string, lowerOnly bool) (layerHit, error) {
	s := d.stack(lowerOnly)
	hit, err := layer.Lookup(s, name, d.u.ns)
	if err != nil {
		return layerHit{name: name}, err
	}
	h := layerHit{kind: hit.Kind, name: name, st: hit.Stat, bottom: hit.Bottom, layers: make([]int, len(hit.Layers))}
	for i, pos := range hit.Layers {
		h.layers[i] = s.layers[pos]
	}
	switch hit.Kind {
	case layer.HitWhiteout:
		h.upperWhiteout = d.u.isUpper(h.layers[0])
	case layer.HitNonDir:
		if d.u.isUpper(h.layers[0]) && d.u.origin.handles {
			if r, err := d.dirFd(h.layers[0]); err == nil {
				h.originIno, _ = d.u.originIno(r.fd, name, h.st.Mode&unix.S_IFMT, devIno{h.st.Dev, h.st.Ino})
				r.release()
			}
		}
	case layer.HitDir:
		h.dirFds = make([]int, len(hit.Dirs))
		h.opacity = make([]layer.Opacity, len(hit.Dirs))
		for i, c := range hit.Dirs {
			fd := c.Fd
			if !d.u.keepDirFd() {
				unix.Close(fd)
				fd = -1
			}
			h.dirFds[i], h.opacity[i] = fd, c.Opacity
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
// hold name (or, in an OCI layer, a ".wh." whiteout of it); false means
// lookupChild can skip
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
	if d.u.layers[li].format != layer.OCIFormat {
		return false
	}
	_, ok = names[layer.WhiteoutPrefix+name]
	return ok
}

// indexLower reads lower layer li's copy of d into a name set and records
// it (nil: not indexed) in d.lowerNames.
func (d *node) indexLower(li int) map[string]struct{} {
	var names []string
	ok := false
	if r, err := d.dirFd(li); err == nil {
		entries, _, err := d.u.reader(li).ReadDir(r.fd)
		r.release()
		if ok = err == nil; ok {
			names = make([]string, len(entries))
			for i, e := range entries {
				names[i] = e.Name
			}
		}
	}
	return d.recordLower(li, names, ok, true)
}

// Names records the names a listing read in a lower copy as that
// layer's index of d (layer.NameRecorder), so a directory listed first
// (READDIRPLUS looks up every entry of what it lists) is not read a
// second time to index it.
func (s *layerStack) Names(i int, names []string) {
	if li := s.layers[i]; !s.d.u.isUpper(li) {
		s.d.recordLower(li, names, true, false)
	}
}

// recordLower records names, all the names of lower layer li's copy of
// d (ok: they could be read), as its index: nil where there are more
// than maxIndexedNames or they could not be read. An index already
// recorded is kept unless replace is set. It returns the index in
// effect.
func (d *node) recordLower(li int, names []string, ok, replace bool) map[string]struct{} {
	var set map[string]struct{}
	if ok && len(names) <= maxIndexedNames {
		set = make(map[string]struct{}, len(names))
		for _, n := range names {
			set[n] = struct{}{}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lowerNames == nil {
		d.lowerNames = make(map[int]map[string]struct{})
	}
	if old, had := d.lowerNames[li]; had && !replace {
		return old
	}
	d.lowerNames[li] = set
	return set
}

// newChild turns a hit into the child Inode of d. The identity is the
// inode number plus, for a non-directory, the layer it came from (its
// origin, after copy-up) as generation: a file hard-linked across layers
// is two files of the union, as in the kernel's. The bridge reuses the
// Inode it already has for the same identity.
func (d *node) newChild(ctx context.Context, h *layerHit) *fs.Inode {
	var id fs.StableAttr
	id.Mode = h.st.Mode & unix.S_IFMT
	if h.kind == layer.HitDir {
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
	if h.kind != layer.HitDir {
		if v, ok := d.u.known.Load(id); ok && !v.(*node).forgotten.Load() {
			// Another name of a live file (a hard link): the bridge
			// would pick that node over a new one anyway, and it is
			// the one whose twin and state count.
			h.closeFds(d.u)
			return v.(*node).EmbeddedInode()
		}
	}
	n := newNode(d.u, id.Ino, h.kind == layer.HitDir, h.layers)
	n.gen = id.Gen
	n.dirFds, n.opacity = h.dirFds, h.opacity
	d.u.known.Store(id, n)
	if h.kind != layer.HitDir && d.u.isUpper(h.layers[0]) {
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
	if !h.kind.Exists() {
		return nil, syscall.ENOENT
	}
	child := d.newChild(ctx, &h)
	cn := child.Operations().(*node)
	cn.fillAttr(&h.st, &out.Attr)
	return child, 0
}
