package fusefs

import (
	"context"
	"fmt"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/mountinfo"
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
//     the copy-up, as kernel overlay on an idmapped upper), and any
//     other change of a file whose owner on disk is outside every range
//     (before it: Linux fs/attr.c notify_change);
//   - one deliberate difference from an idmapped layer: a caller whose
//     own id is outside every range may create, and its file gets the
//     overflow id on disk, as fuse-overlayfs gives it; the kernel refuses
//     (EOVERFLOW, fs/namei.c may_o_create), but rootful podman with
//     --uidmap makes files in the container's tree as host root (the
//     /etc/mtab symlink, /run/.containerenv) before it chowns them to
//     the container's root, which kernel overlay runs because podman
//     gives it no mapped upper (only idmapped lowers);
//   - copy-up copies the owner on disk as it is: both sides are disk ids;
//   - a lower layer on an idmapped mount (MOUNT_ATTR_IDMAP) is already
//     shown through a mapping by the kernel: its owners are shown as the
//     union stats them, not mapped twice, and a copy-up from it goes to
//     the upper through the mapping (shownToDisk). The podman 4.3 of
//     Debian (containers/storage before its fix that leaves idmapped
//     lowers to kernel overlay) hands a mount program idmapped lowers
//     with --uidmap, and the uidmapping= of the same map.
//
// Without a mapping every id is shown and stored as it is.

// overflowID is what an id that no range maps shows as: the kernel's
// default /proc/sys/kernel/overflowuid and overflowgid (nobody, nogroup).
const overflowID = 65534

// diskToShown maps an id on disk through ms (identity when ms is empty);
// an id no range holds shows as the overflow id.
func diskToShown(ms []layer.IDMapping, id uint32) uint32 {
	if shown, ok := diskShown(ms, id); ok {
		return shown
	}
	return overflowID
}

// diskShown maps an id on disk through ms; ok is false for an id no range
// holds (every id is shown without a mapping).
func diskShown(ms []layer.IDMapping, id uint32) (shown uint32, ok bool) {
	if len(ms) == 0 {
		return id, true
	}
	for _, m := range ms {
		if id >= m.Container && id-m.Container < m.Size {
			return m.Host + (id - m.Container), true
		}
	}
	return 0, false
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

// markIDMappedLayers marks the lower layers that are on an idmapped
// mount, when the stack has a mapping (without one nothing changes).
func (u *unionFS) markIDMappedLayers() error {
	if !u.spec.IDMapped() {
		return nil
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return err
	}
	byID := make(map[uint64]mountinfo.Entry, len(mounts))
	for _, m := range mounts {
		byID[uint64(m.ID)] = m
	}
	for i := range u.layers {
		if u.isUpper(i) {
			continue
		}
		var stx unix.Statx_t
		if err := unix.Statx(u.layers[i].fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
			return fmt.Errorf("layer %s: statx: %w", u.layers[i].path, err)
		}
		if m, ok := byID[stx.Mnt_id]; ok && strings.Contains(","+m.Options+",", ",idmapped,") {
			u.layers[i].idmapped = true
			u.log.Debug("fusefs: lower on an idmapped mount, its owners shown as they are", "layer", u.layers[i].path)
		}
	}
	return nil
}

// layerIDMapped reports whether layer li is on an idmapped mount.
func (u *unionFS) layerIDMapped(li int) bool {
	return li >= 0 && li < len(u.layers) && u.layers[li].idmapped
}

// shownOwner is the owner the union shows for the node's visible copy,
// which st describes.
func (n *node) shownOwner(st *unix.Stat_t) (uint32, uint32) {
	if !n.u.spec.IDMapped() || n.u.layerIDMapped(n.topLayer()) {
		return st.Uid, st.Gid
	}
	return diskToShown(n.u.spec.UIDMapping, st.Uid), diskToShown(n.u.spec.GIDMapping, st.Gid)
}

// copyOwner returns st, a file of layer li that is copied up, with the
// owner its copy gets in the upper: the same but for a layer on an
// idmapped mount, whose owners go through the mapping (an id it does not
// show: the overflow id).
func (u *unionFS) copyOwner(li int, st unix.Stat_t) *unix.Stat_t {
	if u.spec.IDMapped() && u.layerIDMapped(li) {
		var ok bool
		if st.Uid, ok = shownToDisk(u.spec.UIDMapping, st.Uid); !ok {
			st.Uid = overflowID
		}
		if st.Gid, ok = shownToDisk(u.spec.GIDMapping, st.Gid); !ok {
			st.Gid = overflowID
		}
	}
	return &st
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
	// Shown by the map: an id on disk in a range, or one an idmapped
	// lower shows that the map takes back.
	idmapped := n.u.layerIDMapped(n.topLayer())
	mapped := func(ms []layer.IDMapping, id uint32) bool {
		if idmapped {
			_, ok := shownToDisk(ms, id)
			return ok
		}
		_, ok := diskShown(ms, id)
		return ok
	}
	_, setU := in.GetUID()
	_, setG := in.GetGID()
	if !setU && !mapped(n.u.spec.UIDMapping, st.Uid) || !setG && !mapped(n.u.spec.GIDMapping, st.Gid) {
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
// creates: the caller's ids, translated; an id the mapping does not show
// becomes the overflow id on disk. ok is false without a caller (nothing
// to give).
func (u *unionFS) callerOwner(ctx context.Context) (uid, gid uint32, ok bool) {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return 0, 0, false
	}
	uid, okU := shownToDisk(u.spec.UIDMapping, c.Uid)
	if !okU {
		uid = overflowID
	}
	gid, okG := shownToDisk(u.spec.GIDMapping, c.Gid)
	if !okG {
		gid = overflowID
	}
	return uid, gid, true
}

// POSIX ACLs name owners too: the entries of a named user (ACL_USER) or
// group (ACL_GROUP) in system.posix_acl_access and _default, in the
// kernel's xattr format (a 4-byte version, then 8-byte entries: tag, perm,
// id; Linux: include/uapi/linux/posix_acl_xattr.h). The kernel hands them
// to the daemon in the mount's ids, so they are translated as owners are.
const (
	aclVersion = 2
	aclUser    = 0x02
	aclGroup   = 0x08
	aclHeader  = 4
	aclEntry   = 8
	aclAccess  = "system.posix_acl_access"
	aclDefault = "system.posix_acl_default"
)

// shownACL translates in place the ACL xattr data of attr that Getxattr
// read from the node's visible copy to the mount's ids; an ACL read from
// a lower on an idmapped mount was mapped by the kernel already. Data
// that is not an ACL is left alone.
func (n *node) shownACL(attr string, data []byte) {
	if n.u.spec.IDMapped() && isACL(attr, data) && !n.u.layerIDMapped(n.topLayer()) {
		n.u.mapACL(data, false)
	}
}

// diskACL returns the ACL xattr data of attr that Setxattr is to write
// with the disk's ids (a copy), or data itself where there is nothing to
// translate. An id the mapping does not take back to the disk is EINVAL,
// as for an ACL naming an id the caller's namespace does not map.
func (u *unionFS) diskACL(attr string, data []byte) ([]byte, error) {
	if !u.spec.IDMapped() || !isACL(attr, data) {
		return data, nil
	}
	data = append([]byte(nil), data...)
	return data, u.mapACL(data, true)
}

// isACL reports whether data, the value of xattr attr, is a POSIX ACL
// in the kernel's format.
func isACL(attr string, data []byte) bool {
	return (attr == aclAccess || attr == aclDefault) && len(data) >= aclHeader && (len(data)-aclHeader)%aclEntry == 0 &&
		data[0] == aclVersion && data[1] == 0 && data[2] == 0 && data[3] == 0
}

// mapACL rewrites the named users and groups of the ACL data in place:
// to the disk's ids (toDisk; an id the mapping does not show is EINVAL,
// and data is then half rewritten) or to the mount's.
func (u *unionFS) mapACL(data []byte, toDisk bool) error {
	for off := aclHeader; off < len(data); off += aclEntry {
		tag := uint16(data[off]) | uint16(data[off+1])<<8
		var ms []layer.IDMapping
		switch tag {
		case aclUser:
			ms = u.spec.UIDMapping
		case aclGroup:
			ms = u.spec.GIDMapping
		default:
			continue
		}
		p := data[off+4 : off+8]
		id := uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
		if toDisk {
			var ok bool
			if id, ok = shownToDisk(ms, id); !ok {
				return unix.EINVAL
			}
		} else {
			id = diskToShown(ms, id)
		}
		p[0], p[1], p[2], p[3] = byte(id), byte(id>>8), byte(id>>16), byte(id>>24)
	}
	return nil
}
