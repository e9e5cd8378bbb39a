package fusefs

import (
	"context"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// Owner translation (layer.Spec's UIDMapping and GIDMapping), as
// fuse-overlayfs's uidmapping= and gidmapping= options, which podman
// gives a mount program for a container in a user namespace of its own
// (--uidmap, rootless --userns=keep-id): the layers on disk keep the ids
// the container sees, and the mount shows each through the mapping as the
// id the container's user namespace maps it to, so the container sees
// its files as they are on disk and the layers need no chown.
//
//   - out: the owner of every attribute the union replies with
//     (fillAttr: lookup, getattr, readdirplus, create) is shown through
//     the mapping (diskToShown); an id on disk in no range shows as the
//     overflow id, as the kernel shows an id a user namespace does not
//     map (fuse-overlayfs does the same);
//   - in: the owner a caller gives (chown: setattr) and the caller's own
//     ids that new files get (ownByCaller) go back to the disk
//     (shownToDisk). What the kernel refuses on an idmapped layer is
//     EOVERFLOW here too: a chown to an id outside every range (after
//     the copy-up, as kernel overlay on an idmapped upper), any other
//     change of a file whose owner on disk is outside every range
//     (before it: Linux fs/attr.c notify_change), and any new file of
//     a caller whose own id is outside every range (fs/namei.c
//     may_o_create, fsuidgid_has_mapping);
//   - copy-up copies the owner on disk as it is: both sides are disk ids.
//
// Without a mapping every id is shown and stored as it is.

// overflowID is what an id that no range maps shows as: the kernel's
// default /proc/sys/kernel/overflowuid and overflowgid (nobody, nogroup).
const overflowID = 65534

// diskToShown maps an id on disk through ms (identity when ms is empty).
func diskToShown(ms []layer.IDMapping, id uint32) uint32 {
	for _, m := range ms {
		if id >= m.Container && id-m.Container < m.Size {
			return m.Host + (id - m.Container)
		}
	}
	if len(ms) == 0 {
		return id
	}
	return overflowID
}

// diskMapped reports whether ms shows the id on disk (every id without
// a mapping).
func diskMapped(ms []layer.IDMapping, id uint32) bool {
	for _, m := range ms {
		if id >= m.Container && id-m.Container < m.Size {
			return true
		}
	}
	return len(ms) == 0
}

// shownToDisk maps an id of the mount back to the disk through ms; ok is
// false for an id no range shows.
func shownToDisk(ms []layer.IDMapping, id uint32) (disk uint32, ok bool) {
	if len(ms) == 0 {
		return id, true
	}
	for _, m := range ms {
		if id >= m.Host && id-m.Host < m.Size {
			return m.Container + (id - m.Host), true
		}
	}
	return 0, false
}

// shownOwner is the owner the union shows for a layer file owned by
// uid:gid on disk.
func (u *unionFS) shownOwner(uid, gid uint32) (uint32, uint32) {
	return diskToShown(u.spec.UIDMapping, uid), diskToShown(u.spec.GIDMapping, gid)
}

// diskOwner is the owner on disk for a chown to uid:gid through the
// mount; -1 leaves that id unchanged, as for chown(2). An id no range
// shows is EOVERFLOW.
func (u *unionFS) diskOwner(uid, gid int) (int, int, error) {
	conv := func(ms []layer.IDMapping, id int) (int, error) {
		if id < 0 {
			return id, nil
		}
		d, ok := shownToDisk(ms, uint32(id))
		if !ok {
			return 0, unix.EOVERFLOW
		}
		return int(d), nil
	}
	du, err := conv(u.spec.UIDMapping, uid)
	if err != nil {
		return 0, 0, err
	}
	dg, err := conv(u.spec.GIDMapping, gid)
	return du, dg, err
}

// settableOwner refuses a SETATTR of node n that keeps an owner (uid or
// gid) its file has on disk outside every range, as the kernel refuses
// to change a file whose owner an idmapped mount does not map.
func (n *node) settableOwner(in *fuse.SetAttrIn) error {
	if !n.u.spec.IDMapped() {
		return nil
	}
	var st unix.Stat_t
	if err := n.lstat(&st); err != nil {
		return err
	}
	_, setU := in.GetUID()
	_, setG := in.GetGID()
	if !setU && !diskMapped(n.u.spec.UIDMapping, st.Uid) || !setG && !diskMapped(n.u.spec.GIDMapping, st.Gid) {
		return unix.EOVERFLOW
	}
	return nil
}

// setattrOwner is the owner a SETATTR asks for, -1 for an id it leaves.
func setattrOwner(in *fuse.SetAttrIn) (uid, gid int) {
	uid, gid = -1, -1
	if v, ok := in.GetUID(); ok {
		uid = int(v)
	}
	if v, ok := in.GetGID(); ok {
		gid = int(v)
	}
	return uid, gid
}

// callerOwner is the owner on disk of a file the request's caller
// creates: the caller's ids, translated. ok is false without a caller
// (nothing to give); a caller that the mapping does not show is
// EOVERFLOW.
func (u *unionFS) callerOwner(ctx context.Context) (uid, gid uint32, ok bool, err error) {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return 0, 0, false, nil
	}
	uid, okU := shownToDisk(u.spec.UIDMapping, c.Uid)
	gid, okG := shownToDisk(u.spec.GIDMapping, c.Gid)
	if !okU || !okG {
		return 0, 0, true, unix.EOVERFLOW
	}
	return uid, gid, true, nil
}
