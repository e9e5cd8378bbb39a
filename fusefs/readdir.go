package fusefs

import (
	"context"
	"encoding/binary"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// rawDirent is one entry of a layer directory as getdents64 gives it.
type rawDirent struct {
	ino  uint64
	typ  uint8
	name string
}

// readRawDir lists the directory open at fd (a readable descriptor) with
// inode numbers and types, which os.ReadDir does not give.
func readRawDir(fd int, fn func(rawDirent)) error {
	buf := make([]byte, 64<<10)
	for {
		m, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if m <= 0 {
			return nil
		}
		for off := 0; off < m; {
			// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
			rec := buf[off:]
			reclen := int(binary.NativeEndian.Uint16(rec[16:18]))
			nameb := rec[19:reclen]
			for i, c := range nameb {
				if c == 0 {
					nameb = nameb[:i]
					break
				}
			}
			if s := string(nameb); s != "." && s != ".." {
				fn(rawDirent{ino: binary.NativeEndian.Uint64(rec[0:8]), typ: rec[18], name: s})
			}
			off += reclen
		}
	}
}

// mergedEntry is one name of a merged directory listing.
type mergedEntry struct {
	name   string
	mode   uint32 // S_IFMT bits
	ino    uint64
	merged bool // a directory present in more than one layer
}

// mergedList reads directory d through its layers, top-first: whiteouts
// hide names below them and are not shown, opaque markers are not shown,
// an upper name hides the same name below, each name appears once. The
// result is a snapshot, so a listing stays stable while the directory
// changes. Visible reports whether to stop at the first entry (an
// emptiness check).
func (d *node) mergedList(firstOnly bool) ([]mergedEntry, error) {
	d.mu.Lock()
	layers := append([]int(nil), d.layers...)
	opac := append([]layer.Opacity(nil), d.opacity...)
	d.mu.Unlock()
	var out []mergedEntry
	index := map[string]int{} // visible name -> index in out; -1 for hidden by a whiteout
	for i, li := range layers {
		r, err := d.dirFd(li)
		if err != nil {
			return nil, err
		}
		fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		r.release()
		if err != nil {
			return nil, err
		}
		dev := uint64(0)
		var dst unix.Stat_t
		if err := unix.Fstat(fd, &dst); err == nil {
			dev = dst.Dev
		}
		// Only an impure upper directory holds copied-up entries whose
		// numbers come from their origin (as in the kernel's readdir).
		impure := false
		if d.u.isUpper(li) && d.u.origin.handles {
			_, ierr := unix.Fgetxattr(fd, d.u.ns.Xattr(layer.KeyImpure), nil)
			impure = ierr == nil
		}
		err = readRawDir(fd, func(e rawDirent) {
			if firstOnly && len(out) > 0 {
				return
			}
			mode := dtToMode(e.typ)
			var st *unix.Stat_t
			if mode == 0 || mode == unix.S_IFCHR || (opac[i] == layer.XattrWhiteouts && mode == unix.S_IFREG) {
				st = new(unix.Stat_t)
				if unix.Fstatat(fd, e.name, st, unix.AT_SYMLINK_NOFOLLOW) != nil {
					return // gone meanwhile
				}
				mode = st.Mode & unix.S_IFMT
			}
			kind, target := layer.Classify(fd, e.name, st, opac[i], d.u.ns)
			switch kind {
			case layer.Opaque, layer.Meta:
				return
			case layer.Whiteout:
				if _, seen := index[target]; !seen {
					index[target] = -1
				}
				return
			}
			if j, seen := index[e.name]; seen {
				if j >= 0 && out[j].mode == unix.S_IFDIR && mode == unix.S_IFDIR {
					out[j].merged = true
				}
				return
			}
			index[e.name] = len(out)
			ino := d.u.ino(dev, e.ino)
			if mode != unix.S_IFDIR {
				if v, ok := d.u.origins.Load(devIno{dev, e.ino}); ok {
					ino = v.(fileIdentity).ino
				} else if impure {
					if oi, ok := d.u.originIno(fd, e.name, mode, devIno{dev, e.ino}); ok {
						ino = oi
					}
				}
			}
			out = append(out, mergedEntry{name: e.name, mode: mode, ino: ino})
		})
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		if firstOnly && len(out) > 0 {
			break
		}
	}
	return out, nil
}

func dtToMode(t uint8) uint32 {
	switch t {
	case unix.DT_REG:
		return unix.S_IFREG
	case unix.DT_DIR:
		return unix.S_IFDIR
	case unix.DT_LNK:
		return unix.S_IFLNK
	case unix.DT_CHR:
		return unix.S_IFCHR
	case unix.DT_BLK:
		return unix.S_IFBLK
	case unix.DT_FIFO:
		return unix.S_IFIFO
	case unix.DT_SOCK:
		return unix.S_IFSOCK
	}
	return 0
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
			if hit, err := d.lookupChild(e.name, false); err == nil && hit.kind == hitDir {
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
