package fusefs

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// The kernel's overlayfs keeps three xattrs beside whiteouts and opaque
// markers that say how an upper entry came to be, and reads them back at
// every mount: overlay.origin on a copied-up entry (a file handle of the
// lower file it was copied from), overlay.impure=y on an upper directory
// that holds such entries, and overlay.uuid on the upper root (the
// overlay's identity). Readdir of a directory without impure takes
// d_ino straight from the upper, while stat of a copied-up entry reports
// its origin's inode number, so an upper written without them shows
// different numbers in readdir and stat once the kernel mounts it. The
// union writes them exactly as the kernel does (Linux:
// fs/overlayfs/copy_up.c ovl_do_copy_up, ovl_encode_real_fh,
// ovl_set_origin; util.c ovl_set_impure; super.c ovl_init_uuid_xattr),
// so the kernel reads its layers as its own.

// File handle layout of overlay.origin (Linux: fs/overlayfs/overlayfs.h,
// struct ovl_fb): version, magic, length of the whole, flags, handle
// type, the 16-byte uuid of the file's filesystem, then the handle.
const (
	fhVersion   = 0
	fhMagic     = 0xfb
	fhHeaderLen = 5 + 16
	// fhFlagBigEndian marks a handle encoded on a big-endian machine
	// (OVL_FH_FLAG_BIG_ENDIAN); on little-endian ones the flag is clear.
	fhFlagBigEndian = 1 << 0
	// fsIocGetFsUUID is FS_IOC_GETFSUUID: _IOR(0x15, 0, struct fsuuid2),
	// the filesystem's s_uuid (Linux 6.5+).
	fsIocGetFsUUID = 0x80111500
)

// originEncoder makes overlay.origin values for one mounted stack.
type originEncoder struct {
	// handles is whether origin carries a file handle: the kernel stores
	// one only when its mounter has CAP_DAC_READ_SEARCH in the initial
	// user namespace (ovl_can_decode_fh); otherwise, and for a lower
	// filesystem that cannot export handles, it stores an empty value,
	// which still marks the entry as copied up.
	handles bool

	mu    sync.Mutex
	uuids map[uint64][16]byte // st_dev -> filesystem uuid; protected by mu

	// decoded caches what stored origins decode to: string(origin) ->
	// decodedOrigin. Lower layers do not change under a mount, so
	// neither does the answer.
	decoded sync.Map
}

// decodedOrigin is the lower file an origin names, or !ok when it names
// none the union may take its number from.
type decodedOrigin struct {
	id devIno
	ok bool
}

func newOriginEncoder() *originEncoder {
	return &originEncoder{handles: mayDecodeHandles(), uuids: map[uint64][16]byte{}}
}

// mayDecodeHandles reports whether this process would be allowed to
// open files by handle, the condition under which the kernel writes
// real origins: CAP_DAC_READ_SEARCH in the initial user namespace.
func mayDecodeHandles() bool {
	if userns.InUserNamespace() {
		return false
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_DAC_READ_SEARCH) != 0
}

// encode returns the overlay.origin value for the file the O_PATH
// descriptor fd refers to, in directory dirfd, which st describes, as
// the kernel would write it: empty when no handle can be had.
func (e *originEncoder) encode(dirfd, fd int, st *unix.Stat_t) ([]byte, error) {
	if !e.handles {
		return []byte{}, nil
	}
	h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) {
		return []byte{}, nil // no export operations: the kernel's null handle
	}
	if err != nil {
		return nil, err
	}
	fid := h.Bytes()
	if h.Type() < 0 || h.Type() > 0xff || fhHeaderLen+len(fid) > 0xff {
		return []byte{}, nil
	}
	uuid := e.fsUUID(dirfd, st.Dev)
	fh := make([]byte, 0, fhHeaderLen+len(fid))
	var flags byte
	if nativeBigEndian() {
		flags |= fhFlagBigEndian
	}
	fh = append(fh, fhVersion, fhMagic, byte(fhHeaderLen+len(fid)), flags, byte(h.Type()))
	fh = append(fh, uuid[:]...)
	return append(fh, fid...), nil
}

// fsUUID returns the uuid of the filesystem dev, asking through dirfd
// (a directory on it) the first time. A kernel or filesystem that does
// not tell gives the null uuid; the kernel then finds the stored uuid
// does not match and ignores the origin, which costs only the inode
// number it would have kept.
func (e *originEncoder) fsUUID(dirfd int, dev uint64) [16]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u, ok := e.uuids[dev]; ok {
		return u
	}
	var buf struct {
		len  uint8
		uuid [16]byte
	}
	var u [16]byte
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(dirfd), fsIocGetFsUUID, uintptr(unsafe.Pointer(&buf))); errno == 0 && buf.len == 16 {
		u = buf.uuid
	}
	e.uuids[dev] = u
	return u
}

func nativeBigEndian() bool {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], 1)
	return b[0] == 0
}

// setOrigin stores origin with set, on a copy not yet visible (in
// the work dir). As in the kernel, an upper without xattrs, or one
// refusing user.* xattrs on a symlink or special file, is no error.
func (u *unionFS) setOrigin(set func(name string, val []byte) error, origin []byte) error {
	err := set(u.ns.Xattr(layer.KeyOrigin), origin)
	if err == nil || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	return err
}

// hasOrigin reports whether the upper entry at path carries
// overlay.origin (with or without a handle): it was copied up.
func (u *unionFS) hasOrigin(path string) bool {
	_, err := unix.Lgetxattr(path, u.ns.Xattr(layer.KeyOrigin), nil)
	return err == nil
}

// markImpure sets overlay.impure=y on the upper directory dirfd, which
// is about to hold an entry with an origin, unless it has it already
// (Linux: fs/overlayfs/util.c ovl_set_impure). An upper without xattrs,
// or a daemon not allowed to write the stack's namespace (trusted.* for
// an ordinary user), is no error, as in the kernel: such an upper has no
// origins for the mark to announce.
func (u *unionFS) markImpure(dirfd int) error {
	name := u.ns.Xattr(layer.KeyImpure)
	if _, err := unix.Fgetxattr(dirfd, name, nil); err == nil {
		return nil
	}
	err := unix.Fsetxattr(dirfd, name, []byte("y"), 0)
	if err == nil || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
		return nil
	}
	return err
}

// initUUID gives a fresh upper its overlay.uuid, as the kernel does at
// the first mount of an upper that is not yet impure (uuid=auto): an
// upper that has one keeps it, and one already impure without it stays
// without (the kernel then mounts it with uuid=null). Best effort, as in
// the kernel: failing to store it is only logged.
func (u *unionFS) initUUID() {
	if !u.writable {
		return
	}
	root := u.layers[0].fd
	if _, err := unix.Fgetxattr(root, u.ns.Xattr(layer.KeyUUID), nil); err == nil {
		return
	}
	if _, err := unix.Fgetxattr(root, u.ns.Xattr(layer.KeyImpure), nil); err == nil {
		return
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		u.log.Warn("upper uuid: no random bytes", "err", err)
		return
	}
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	if err := unix.Fsetxattr(root, u.ns.Xattr(layer.KeyUUID), id[:], 0); err != nil {
		u.log.Debug("upper uuid: not stored", "upper", u.spec.Upper, "err", err)
	}
}

// impureFor marks the upper directory dst impure when the upper entry
// name of directory src, about to be moved or linked into dst, was
// copied up (Linux: fs/overlayfs/dir.c ovl_rename and
// ovl_create_or_link mark the new parent of an entry with an origin).
func (u *unionFS) impureFor(dst, src int, name string) error {
	if !u.hasOrigin(procPathAt(src, name)) {
		return nil
	}
	return u.markImpure(dst)
}

// originIno returns the inode number the union shows for the upper
// non-directory name of directory dirfd (file type mode, upper identity
// up): that of the lower file it was copied up from in an earlier mount,
// as the kernel's overlay reports for a copied-up file whose origin it
// can decode (Linux: fs/overlayfs/inode.c ovl_getattr), so numbers stay
// the same across copy-up and remount. ok is false for a file copied up
// during this mount (u.origins numbers it), one without origin, and
// where the kernel would show the upper's own number: the origin does
// not decode, names a file of another type, or one with other hard links.
func (u *unionFS) originIno(dirfd int, name string, mode uint32, up devIno) (ino uint64, ok bool) {
	if !u.origin.handles {
		return 0, false
	}
	if _, live := u.origins.Load(up); live {
		return 0, false
	}
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(procPathAt(dirfd, name), u.ns.Xattr(layer.KeyOrigin), buf)
	if err != nil || n < fhHeaderLen {
		return 0, false
	}
	fh := buf[:n]
	v, found := u.origin.decoded.Load(string(fh))
	if !found {
		v, _ = u.origin.decoded.LoadOrStore(string(fh), u.decodeOrigin(fh, mode))
	}
	d := v.(decodedOrigin)
	if !d.ok {
		return 0, false
	}
	return u.ino(d.id.dev, d.id.ino), true
}

// decodeOrigin opens the file handle fh (an overlay.origin value) in the
// lower layer whose filesystem uuid it carries, as the kernel does
// (Linux: fs/overlayfs/namei.c ovl_check_origin_fh), and returns that
// file's identity if the union may number the copy after it.
func (u *unionFS) decodeOrigin(fh []byte, mode uint32) decodedOrigin {
	var flags byte
	if nativeBigEndian() {
		flags = fhFlagBigEndian
	}
	if fh[0] != fhVersion || fh[1] != fhMagic || int(fh[2]) != len(fh) || fh[3]&fhFlagBigEndian != flags {
		return decodedOrigin{}
	}
	var uuid [16]byte
	copy(uuid[:], fh[5:fhHeaderLen])
	handle := unix.NewFileHandle(int32(fh[4]), fh[fhHeaderLen:])
	for li, l := range u.layers {
		if u.isUpper(li) {
			continue
		}
		var lst unix.Stat_t
		if unix.Fstat(l.fd, &lst) != nil || u.origin.fsUUID(l.fd, lst.Dev) != uuid {
			continue
		}
		fd, err := unix.OpenByHandleAt(l.fd, handle, unix.O_PATH|unix.O_CLOEXEC)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil || st.Mode&unix.S_IFMT != mode || st.Nlink != 1 {
			return decodedOrigin{}
		}
		return decodedOrigin{id: devIno{st.Dev, st.Ino}, ok: true}
	}
	return decodedOrigin{}
}
