package fusefs

import (
	"context"
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
// result is a snapshot, so a listing stays stable while the directory
// changes. firstOnly stops at the first entry (an emptiness check).
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

// dirHandle is an open directory. It reads from a snapshot of the merged
// listing that the directory node keeps from a read at offset 0 until a
// read reaches the end, so a listing continued through another handle
// (the kernel's readdir cache does that, and opendir-less reads get a
// fresh handle per request) goes on with the same entries.
type dirHandle struct {
	d       *node
	entries []fuse.DirEntry // nil until the first read
	pos     int
}

var _ = (fs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle lets the kernel cache the listing (FOPEN_CACHE_DIR): the
// union is the only writer of its upper, and the kernel drops the cache
// itself when an entry is created or removed through the mount.
func (d *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// snapshot returns the directory's listing: a fresh one when fresh is
// set (a read from the start), else the one a listing in progress uses.
func (d *node) snapshot(fresh bool) ([]fuse.DirEntry, syscall.Errno) {
	if !fresh {
		d.mu.Lock()
		l := d.listing
		d.mu.Unlock()
		if l != nil {
			return l, 0
		}
	}
	list, err := d.mergedList(false)
	if err != nil {
		return nil, toErrno(err)
	}
	ents := make([]fuse.DirEntry, 0, len(list)+2)
	ents = append(ents, fuse.DirEntry{Name: ".", Mode: unix.S_IFDIR, Ino: d.ino})
	parentIno := d.ino
	if p, _ := d.parentNode(); p != nil {
		parentIno = p.ino
	}
	ents = append(ents, fuse.DirEntry{Name: "..", Mode: unix.S_IFDIR, Ino: parentIno})
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
		ents = append(ents, fuse.DirEntry{Name: e.name, Mode: e.mode, Ino: ino})
	}
	d.mu.Lock()
	d.listing = ents
	d.mu.Unlock()
	return ents, 0
}

// dropSnapshot forgets the listing ents once a read has reached its end.
func (d *node) dropSnapshot(ents []fuse.DirEntry) {
	d.mu.Lock()
	if len(d.listing) > 0 && len(ents) > 0 && &d.listing[0] == &ents[0] {
		d.listing = nil
	}
	d.mu.Unlock()
}

var _ = (fs.FileReaddirenter)((*dirHandle)(nil))

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.entries == nil {
		ents, errno := h.d.snapshot(h.pos == 0)
		if errno != 0 {
			return nil, errno
		}
		h.entries = ents
	}
	if h.pos >= len(h.entries) {
		h.d.dropSnapshot(h.entries)
		return nil, 0
	}
	e := h.entries[h.pos]
	h.pos++
	e.Off = uint64(h.pos)
	return &e, 0
}

var _ = (fs.FileSeekdirer)((*dirHandle)(nil))

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == 0 {
		h.entries = nil // rewinddir: a fresh snapshot
		h.pos = 0
		return 0
	}
	if h.entries == nil {
		ents, errno := h.d.snapshot(false)
		if errno != 0 {
			return errno
		}
		h.entries = ents
	}
	if off > uint64(len(h.entries)) {
		return syscall.EINVAL
	}
	h.pos = int(off)
	return 0
}

var _ = (fs.FileReleasedirer)((*dirHandle)(nil))

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) { h.entries = nil }

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
