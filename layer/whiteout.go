package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Namespace selects where overlay metadata xattrs are written: trusted.*
// needs CAP_SYS_ADMIN in the initial namespace, user.* is what the kernel
// uses with the userxattr mount option (unprivileged overlay).
type Namespace int

const (
	Trusted Namespace = iota
	User
)

func (n Namespace) String() string {
	if n == User {
		return "user"
	}
	return "trusted"
}

// Xattr returns the full name of overlay xattr key in n, e.g.
// User.Xattr("opaque") == "user.overlay.opaque".
func (n Namespace) Xattr(key string) string { return n.String() + ".overlay." + key }

// Names of overlay xattr keys (Linux: fs/overlayfs/overlayfs.h).
const (
	KeyOpaque   = "opaque"
	KeyWhiteout = "whiteout"
	KeyOrigin   = "origin"   // the lower file a copied-up file came from (an encoded file handle)
	KeyImpure   = "impure"   // an upper directory holding copied-up entries or redirects
	KeyUUID     = "uuid"     // the upper root's identity, for origin handles
	KeyMetacopy = "metacopy" // a copied-up file whose data is still in the lower
	// KeyFormat, on a layer's root directory, records a layer that is not
	// in the kernel's format (see Format). It is ovl's own key, hidden
	// and never copied like every overlay xattr.
	KeyFormat = "ovl.format"
)

// OCI/AUFS whiteout names: whiteouts only in a layer in OCIFormat.
const (
	WhiteoutPrefix = ".wh."
	OpaqueMarker   = ".wh..wh..opq"
	aufsMetaPrefix = ".wh..wh."
)

// IsOverlayXattr reports whether name is overlay metadata (trusted.overlay.*
// or user.overlay.*), which is never copied between layers.
func IsOverlayXattr(name string) bool {
	return Trusted.IsOverlayXattr(name) || User.IsOverlayXattr(name)
}

// IsOverlayXattr reports whether name is overlay metadata in namespace n:
// what a mount whose metadata lives in n hides from its users. The kernel
// shows user.overlay.* as an ordinary xattr on a trusted.* stack.
func (n Namespace) IsOverlayXattr(name string) bool {
	return strings.HasPrefix(name, n.String()+".overlay.")
}

// EscapeXattr maps an xattr name a user stores through a mount whose
// metadata lives in n to the name kept on disk: names in n's overlay
// prefix get one more "overlay.", so they never mean anything to a union
// (Linux 6.7+: fs/overlayfs/xattrs.c, ovl_xattr_escape).
func (n Namespace) EscapeXattr(name string) string {
	if p := n.Xattr(""); strings.HasPrefix(name, p) {
		return p + "overlay." + name[len(p):]
	}
	return name
}

// UnescapeXattr maps a name stored on disk to the name a user of the
// mount sees, or "" for the union's own metadata.
func (n Namespace) UnescapeXattr(name string) string {
	p := n.Xattr("")
	if !strings.HasPrefix(name, p) {
		return name
	}
	if rest := name[len(p):]; strings.HasPrefix(rest, "overlay.") {
		return p + rest[len("overlay."):]
	}
	return ""
}

// namespaces is ns, or both namespaces when ns is empty: a reader that
// does not know which namespace wrote a layer honours either.
func namespaces(ns []Namespace) []Namespace {
	if len(ns) == 0 {
		return []Namespace{Trusted, User}
	}
	return ns
}

// Format says how a layer records deletions and opaque directories.
type Format int

const (
	// KernelFormat is the kernel's (what ovl writes): a whiteout is a 0/0
	// character device or a 6.7+ xattr whiteout, an opaque directory
	// carries overlay.opaque = "y". Every name is an ordinary name, those
	// starting with ".wh." too, as in the kernel.
	KernelFormat Format = iota
	// OCIFormat is an unpacked OCI (Docker, AUFS) image layer, as an
	// importer leaves it and records it (RecordFormat): ".wh.NAME" hides
	// NAME, a ".wh..wh..opq" entry makes its directory opaque, other
	// ".wh..wh." names are bookkeeping; none of them is a name of the
	// tree. The kernel's whiteouts count too. Kernel overlay cannot read
	// this format.
	OCIFormat
)

func (f Format) String() string {
	if f == OCIFormat {
		return "oci"
	}
	return "kernel"
}

// ReadFormat reads the Format a layer records on its root directory,
// open at dirfd (O_PATH will do): OCIFormat where KeyFormat says "oci" in
// either namespace, KernelFormat where it is absent.
func ReadFormat(dirfd int) (Format, error) {
	buf := make([]byte, 16)
	p := fdPath(dirfd, ".")
	for _, ns := range namespaces(nil) {
		n, err := unix.Lgetxattr(p, ns.Xattr(KeyFormat), buf)
		switch {
		case err == nil:
			if v := string(buf[:n]); v != OCIFormat.String() {
				return KernelFormat, fmt.Errorf("%s is %q: a layer format ovl does not know (it knows %q)", ns.Xattr(KeyFormat), v, OCIFormat)
			}
			return OCIFormat, nil
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM),
			errors.Is(err, unix.EACCES):
		case errors.Is(err, unix.ERANGE):
			return KernelFormat, fmt.Errorf("%s: a value longer than any layer format ovl knows", ns.Xattr(KeyFormat))
		default:
			return KernelFormat, fmt.Errorf("read %s: %w", ns.Xattr(KeyFormat), err)
		}
	}
	return KernelFormat, nil
}

// RecordFormat records on the root directory of a layer, open at dirfd,
// that the layer is in format f (an importer of OCI layers calls it once
// the layer is unpacked), in namespace ns: trusted.* needs
// CAP_SYS_ADMIN, user.* is what an ordinary user can set.
func RecordFormat(dirfd int, f Format, ns Namespace) error {
	p := fdPath(dirfd, ".")
	if f == KernelFormat {
		err := unix.Lremovexattr(p, ns.Xattr(KeyFormat))
		if err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove %s: %w", ns.Xattr(KeyFormat), err)
		}
		return nil
	}
	if err := unix.Lsetxattr(p, ns.Xattr(KeyFormat), []byte(f.String()), 0); err != nil {
		return fmt.Errorf("set %s: %w", ns.Xattr(KeyFormat), err)
	}
	return nil
}

// Kind says what a directory entry of a layer means to the merged tree.
type Kind int

const (
	// Visible is an ordinary file, directory, link or node.
	Visible Kind = iota
	// Whiteout hides Entry.Target in the layers below.
	Whiteout
	// Opaque is the ".wh..wh..opq" marker of an OCIFormat layer: its
	// directory hides the layers below. The marker itself is not shown.
	Opaque
	// Meta is AUFS bookkeeping in an OCIFormat layer (".wh..wh.plnk" and
	// the like): hidden, no effect on the merge.
	Meta
)

func (k Kind) String() string {
	return [...]string{"visible", "whiteout", "opaque-marker", "meta"}[k]
}

// Opacity says how a layer's directory combines with the layers below it.
type Opacity int

const (
	// Transparent directories merge with the same directory below.
	Transparent Opacity = iota
	// OpaqueDir hides everything below it.
	OpaqueDir
	// HasXattrWhiteouts is a transparent directory whose entries may be
	// 6.7+ xattr whiteouts (overlay.opaque = "x").
	HasXattrWhiteouts
)

// IsWhiteoutDevice reports whether a file with this mode and device number
// is a kernel whiteout: a character device 0/0.
func IsWhiteoutDevice(mode uint32, rdev uint64) bool {
	return mode&unix.S_IFMT == unix.S_IFCHR && rdev == 0
}

// Reader reads the entries of layer directories: which are whiteouts,
// which directories are opaque. The zero Reader reads the kernel's format
// and honours overlay xattrs in both namespaces.
type Reader struct {
	// Format is the layer's format (ReadFormat).
	Format Format
	// NS limits the overlay xattrs honoured to these namespaces, as a
	// kernel mount honours only its own; nil honours both (a reader that
	// does not know which namespace wrote a layer).
	NS []Namespace
}

// Classify tells what entry name of the layer directory dirfd, in the
// kernel's format, is. st is the entry's lstat; dir is the directory's
// Opacity (from DirOpacity). For a whiteout, target is the name it hides;
// otherwise it is name. ns limits the xattr whiteouts honoured to those
// namespaces (default: both), as a kernel mount honours only its own.
// Reader.Classify reads a layer in another format.
func Classify(dirfd int, name string, st *unix.Stat_t, dir Opacity, ns ...Namespace) (kind Kind, target string) {
	return Reader{NS: ns}.Classify(dirfd, name, st, dir)
}

// Classify tells what entry name of the layer directory dirfd is. st is
// the entry's lstat (nil: not known, which leaves whiteouts that are
// files unseen); dir is the directory's Opacity. For a whiteout, target
// is the name it hides; otherwise it is name.
func (r Reader) Classify(dirfd int, name string, st *unix.Stat_t, dir Opacity) (kind Kind, target string) {
	if r.Format == OCIFormat && strings.HasPrefix(name, WhiteoutPrefix) {
		switch {
		case name == OpaqueMarker:
			return Opaque, name
		case strings.HasPrefix(name, aufsMetaPrefix):
			return Meta, name
		default:
			return Whiteout, name[len(WhiteoutPrefix):]
		}
	}
	if st != nil {
		if IsWhiteoutDevice(st.Mode, st.Rdev) {
			return Whiteout, name
		}
		if dir == HasXattrWhiteouts && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 && r.hasWhiteoutXattr(dirfd, name) {
			return Whiteout, name
		}
	}
	return Visible, name
}

func (r Reader) hasWhiteoutXattr(dirfd int, name string) bool {
	p := fdPath(dirfd, name)
	for _, ns := range namespaces(r.NS) {
		if _, err := unix.Lgetxattr(p, ns.Xattr(KeyWhiteout), nil); err == nil {
			return true
		}
	}
	return false
}

func fdPath(dirfd int, name string) string {
	return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
}

// DirOpacity reads how the layer directory open at dirfd, in the kernel's
// format, merges with the layers below: its opaque xattr ("y" opaque, "x"
// has xattr whiteouts). ns limits the xattrs read to those namespaces
// (default: both).
func DirOpacity(dirfd int, nss ...Namespace) (Opacity, error) {
	return Reader{NS: nss}.Opacity(dirfd)
}

// Opacity reads how the layer directory open at dirfd (O_PATH will do)
// merges with the layers below: its overlay.opaque xattr ("y" opaque,
// "x" has xattr whiteouts) or, in an OCIFormat layer, a ".wh..wh..opq"
// entry. An xattr the caller may not read counts as absent, as in the
// kernel (which reads it with the mounter's rights).
func (r Reader) Opacity(dirfd int) (Opacity, error) {
	buf := make([]byte, 8)
	op := Transparent
	var p string // the /proc path of dirfd, for an O_PATH descriptor
	for _, ns := range namespaces(r.NS) {
		var n int
		var err error
		if p == "" {
			n, err = unix.Fgetxattr(dirfd, ns.Xattr(KeyOpaque), buf)
			if errors.Is(err, unix.EBADF) {
				p = fdPath(dirfd, ".")
			}
		}
		if p != "" {
			n, err = unix.Lgetxattr(p, ns.Xattr(KeyOpaque), buf)
		}
		switch {
		case err == nil:
			switch string(buf[:n]) {
			case "y":
				return OpaqueDir, nil
			case "x":
				op = HasXattrWhiteouts
			}
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM),
			errors.Is(err, unix.ERANGE), errors.Is(err, unix.EACCES):
		default:
			return Transparent, fmt.Errorf("read %s: %w", ns.Xattr(KeyOpaque), err)
		}
	}
	if r.Format == OCIFormat {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, OpaqueMarker, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			return OpaqueDir, nil
		}
	}
	return op, nil
}

// Entry is one classified entry of a layer directory.
type Entry struct {
	Name   string
	Kind   Kind
	Target string      // the name a whiteout hides; Name otherwise
	Type   fs.FileMode // type bits only
}

// ReadDir lists the layer directory open at dirfd, in the kernel's
// format, with every entry classified, and returns the directory's
// Opacity. ns limits the overlay xattrs honoured to those namespaces
// (default: both).
func ReadDir(dirfd int, ns ...Namespace) ([]Entry, Opacity, error) {
	return Reader{NS: ns}.ReadDir(dirfd)
}

// ReadDir lists the layer directory open at dirfd with every entry
// classified, and returns the directory's Opacity. It opens its own
// descriptor, so concurrent calls on one dirfd are safe.
func (r Reader) ReadDir(dirfd int) ([]Entry, Opacity, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, Transparent, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	op, err := r.Opacity(fd)
	if err != nil {
		return nil, Transparent, err
	}
	des, err := f.ReadDir(-1)
	if err != nil {
		return nil, op, err
	}
	out := make([]Entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		e := Entry{Name: name, Target: name, Type: de.Type()}
		needStat := de.Type()&fs.ModeCharDevice != 0 || (op == HasXattrWhiteouts && de.Type().IsRegular())
		var st *unix.Stat_t
		if needStat {
			st = new(unix.Stat_t)
			if err := unix.Fstatat(fd, name, st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // removed meanwhile
				}
				return nil, op, err
			}
		}
		e.Kind, e.Target = r.Classify(fd, name, st, op)
		out = append(out, e)
	}
	return out, op, nil
}
