package fusefs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
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
// alone. A listing goes on across requests because directory offsets
// stay valid whatever changes (see dirListing).
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

// Writev drops the file's set-user-ID and set-group-ID bits before a
// write the kernel flags with WRITE_KILL_SUIDGID (the caller lacks
// CAP_FSETID), as the kernel's own write does: with
// FUSE_HANDLE_KILLPRIV_V2 the kernel leaves that to the filesystem, and
// saves a GETATTR per chown and a GETXATTR per change in return.
//
// A write through a descriptor opened with O_APPEND reaches node.Write
// with appendFlag set in its offset (see there).
func (r *rawUnion) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		if st := r.killSuidgid(cancel, in.InHeader); !st.Ok() {
			return 0, st
		}
	}
	if in.Flags&unix.O_APPEND != 0 {
		mark := *in
		mark.Offset |= appendFlag
		in = &mark
	}
	return r.RawFileSystem.Writev(cancel, in, data)
}

// killSuidgid clears set-user-ID, and set-group-ID when group execute is
// set, on node hdr.NodeId, through the bridge (so copy-up and cache
// invalidation happen as for a chmod).
func (r *rawUnion) killSuidgid(cancel <-chan struct{}, hdr fuse.InHeader) fuse.Status {
	var attr fuse.AttrOut
	if st := r.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: hdr}, &attr); !st.Ok() {
		return st
	}
	mode, ok := killSuidgidMode(attr.Mode)
	if !ok {
		return fuse.OK
	}
	in := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: hdr, Valid: fuse.FATTR_MODE, Mode: mode & 0o7777}}
	return r.RawFileSystem.SetAttr(cancel, in, &attr)
}

// killSuidgidMode returns mode without the set-id bits a change by an
// unprivileged caller drops (Linux: fs/attr.c:setattr_should_drop_suidgid:
// set-user-ID always, set-group-ID only with group execute), and whether
// that differs from mode.
func killSuidgidMode(mode uint32) (uint32, bool) {
	kill := uint32(0)
	if mode&unix.S_ISUID != 0 {
		kill |= unix.S_ISUID
	}
	if mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		kill |= unix.S_ISGID
	}
	return mode &^ kill, kill != 0
}
