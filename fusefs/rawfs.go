package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawUnion sits between the kernel and go-fuse's node bridge to save the
// OPENDIR and RELEASEDIR round trips of every directory listing: it
// answers OPENDIR with ENOSYS once, after which the kernel opens
// directories without asking and with FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE
// (Linux: fs/fuse/file.c:fuse_do_open, "Default for no-open"), and serves
// each READDIR(PLUS) that then arrives without a handle through a handle
// of its own.
type rawUnion struct {
	fuse.RawFileSystem // the node bridge
}

func (r *rawUnion) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (r *rawUnion) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status { return r.RawFileSystem.ReadDir(cancel, in, out) })
}

func (r *rawUnion) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status { return r.RawFileSystem.ReadDirPlus(cancel, in, out) })
}

// withHandle runs read with a directory handle opened for this request
// alone. The listing stays consistent across requests because the
// directory node keeps its snapshot until a read reaches the end.
func (r *rawUnion) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, read func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(in)
	}
	var oo fuse.OpenOut
	if st := r.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader}, &oo); !st.Ok() {
		return st
	}
	hin := *in
	hin.Fh = oo.Fh
	st := read(&hin)
	r.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: oo.Fh})
	return st
}

func (r *rawUnion) ReleaseDir(in *fuse.ReleaseIn) {
	if in.Fh != 0 {
		r.RawFileSystem.ReleaseDir(in)
	}
}
