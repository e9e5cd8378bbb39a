package fusefs

import (
	"context"
	"hash/fnv"
	"sort"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// mergedEntry is one name of a merged directory listing.
type mergedEntry struct {
	name   string
	mode   uint32 // S_IFMT bits
	ino    uint64
	merged bool // a directory present in more than one layer
}

// mergedList reads directory d through its layers (layer.List): whiteouts
// hide names below them and are not shown, opaque markers are not shown,
// an upper name hides the same name below, each name appears once. The
// result is a snapshot (how listings use it: dirListing). firstOnly
// stops at the first entry (an emptiness check).
func (d *node) mergedList(firstOnly bool) ([]mergedEntry, error) {
	s := d.stack(false)
	max := 0
	if firstOnly {
		max = 1
	}
	list, err := layer.List(s, max, d.u.ns)
	if err != nil {
		return nil, err
	}
	// Only an impure upper directory holds copied-up entries whose
	// numbers come from their origin (as in the kernel's readdir).
	upper := fdRef{fd: -1}
	defer func() { upper.release() }()
	impure := false
	out := make([]mergedEntry, len(list))
	for i, e := range list {
		ino := d.u.ino(e.Dev, e.Ino)
		if e.Mode != unix.S_IFDIR {
			li := s.layers[e.Layer]
			if v, ok := d.u.origins.Load(devIno{e.Dev, e.Ino}); ok {
				ino = v.(fileIdentity).ino
			} else if d.u.isUpper(li) && d.u.origin.handles {
				if upper.fd < 0 {
					if upper, err = d.dirFd(li); err != nil {
						return nil, err
					}
					_, ierr := unix.Lgetxattr(procPathAt(upper.fd, "."), d.u.ns.Xattr(layer.KeyImpure), nil)
					impure = ierr == nil
				}
				if impure {
					if oi, ok := d.u.originIno(upper.fd, e.Name, e.Mode, devIno{e.Dev, e.Ino}); ok {
						ino = oi
					}
				}
			}
		}
		out[i] = mergedEntry{name: e.Name, mode: e.Mode, ino: ino, merged: e.Merged}
	}
	return out, nil
}

// Directory offsets. A listing is served in the order of each name's
// cookie, a 63-bit hash of the name ("." is 1, ".." is 2), and the
// offset after an entry (its d_off, what telldir returns) is its cookie:
// a read at offset X goes on with the names whose cookie is above X, in
// a listing of the directory taken when the read from offset 0 began or
// later. So an offset stays valid however the directory changes, as
// POSIX wants of telldir and seekdir: a name present throughout a
// listing is returned exactly once, one created or removed meanwhile
// maybe (rm -rf reads a part of a directory, removes it and reads on; ls
// lists while another process creates), as with the kernel's overlay,
// which reads on in the listing it took at opendir. Two names of one
// hash (a chance of about 1 in 10^9 for a directory of 100,000) take
// consecutive cookies.

// dirListing is a directory's merged listing in cookie order, as it was
// at generation gen of the directory (node.listGen).
type dirListing struct {
	gen  uint64
	ents []fuse.DirEntry // Off is the entry's cookie
}

// after returns the index of the first entry past offset off.
func (l *dirListing) after(off uint64) int {
	return sort.Search(len(l.ents), func(i int) bool { return l.ents[i].Off > off })
}

// dirCookie is the cookie of a name (above 2, below 1<<63).
func dirCookie(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return max(h.Sum64()>>1, 3)
}

// dirChanged records that names in directory d changed (created,
// removed, renamed, renumbered): listings built before are stale. Called
// after the change is on disk.
func (d *node) dirChanged() { d.listGen.Add(1) }

// currentListing returns d's listing: the one kept from an earlier read
// when nothing changed since, or when fresh is false (a listing that goes
// on may take it even then: it holds every name present throughout,
// which is all POSIX asks, and a directory that changes while it is
// listed is not read again for every part of it); else a fresh one,
// kept for the reads that follow.
func (d *node) currentListing(fresh bool) (*dirListing, syscall.Errno) {
	gen := d.listGen.Load()
	d.mu.Lock()
	l := d.listing
	d.mu.Unlock()
	if l != nil && (l.gen == gen || !fresh) {
		return l, 0
	}
	// The one call that merges the layers.
	list, err := d.mergedList(false)
	if err != nil {
		return nil, toErrno(err)
	}
	l = &dirListing{gen: gen, ents: make([]fuse.DirEntry, 0, len(list)+2)}
	parentIno := d.ino
	if p, _ := d.parentNode(); p != nil {
		parentIno = p.ino
	}
	l.ents = append(l.ents,
		fuse.DirEntry{Name: ".", Mode: unix.S_IFDIR, Ino: d.ino, Off: 1},
		fuse.DirEntry{Name: "..", Mode: unix.S_IFDIR, Ino: parentIno, Off: 2})
	for _, e := range list {
		ino := e.ino
		if e.merged {
			// A merged directory is numbered after its bottom-most
			// copy: look it up exactly, as stat would.
			if hit, err := d.lookupChild(e.name, false); err == nil && hit.kind == layer.HitDir {
				ino = d.u.ino(hit.bottom.Dev, hit.bottom.Ino)
				hit.closeFds(d.u)
			}
		}
		l.ents = append(l.ents, fuse.DirEntry{Name: e.name, Mode: e.mode, Ino: ino, Off: dirCookie(e.name)})
	}
	names := l.ents[2:]
	sort.Slice(names, func(i, j int) bool {
		if names[i].Off != names[j].Off {
			return names[i].Off < names[j].Off
		}
		return names[i].Name < names[j].Name
	})
	for i := 1; i < len(names); i++ {
		if names[i].Off <= names[i-1].Off {
			names[i].Off = names[i-1].Off + 1 // a hash shared
		}
	}
	d.mu.Lock()
	if d.listing == nil || d.listing.gen <= gen {
		d.listing = l
	}
	d.mu.Unlock()
	return l, 0
}

// dropListing forgets l once a read finds nothing left in it, so an
// idle directory holds no listing (a huge one would hold megabytes).
// A read that returned entries and reached the end keeps it: the kernel
// learns of the end only from the empty read it sends next (getdents
// reads until one returns nothing), which would otherwise merge the
// layers again to find nothing past the last entry.
func (d *node) dropListing(l *dirListing) {
	d.mu.Lock()
	if d.listing == l {
		d.listing = nil
	}
	d.mu.Unlock()
}

// dirHandle is an open directory: a position (the offset of the last
// entry returned) and the listing it reads from, taken at its first read
// and again after a seek. Every READDIR of the kernel's opendir-less
// reads gets a fresh handle (rawUnion), at the offset where the last one
// stopped; a read from offset 0 sees the directory as it is then.
type dirHandle struct {
	d    *node
	off  uint64      // where to go on from
	l    *dirListing // nil until the first read after open or seek
	next int         // index in l of the next entry
	// served is set once this handle returned an entry.
	served bool
}

var _ = (fs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle lets the kernel cache the listing (FOPEN_CACHE_DIR): the
// union is the only writer of its upper, and the kernel drops the cache
// itself when an entry is created or removed through the mount.
func (d *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

var _ = (fs.FileReaddirenter)((*dirHandle)(nil))

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.l == nil {
		l, errno := h.d.currentListing(h.off == 0)
		if errno != 0 {
			return nil, errno
		}
		h.l, h.next = l, l.after(h.off)
	}
	if h.next >= len(h.l.ents) {
		if !h.served {
			h.d.dropListing(h.l)
		}
		return nil, 0
	}
	e := h.l.ents[h.next]
	h.next++
	h.served = true
	h.off = e.Off
	return &e, 0
}

var _ = (fs.FileSeekdirer)((*dirHandle)(nil))

// Seekdir goes on after offset off, any value: an offset this union gave
// is valid for as long as the directory exists, whatever changed.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.off, h.l = off, nil
	return 0
}

var _ = (fs.FileReleasedirer)((*dirHandle)(nil))

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) { h.l = nil }

var _ = (fs.FileFsyncdirer)((*dirHandle)(nil))

func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if h.d.u.volatile || !h.d.inUpper() {
		return 0
	}
	r, err := h.d.dirFd(0)
	if err != nil {
		return toErrno(err)
	}
	defer r.release()
	fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(fd)
	return toErrno(unix.Fsync(fd))
}
