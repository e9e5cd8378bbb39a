package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// KernelMaxLayers is the deepest lower stack the kernel mounts.
// Linux: fs/overlayfs/params.h:OVL_MAX_STACK.
const KernelMaxLayers = 500

// Spec describes one layer stack to mount.
type Spec struct {
	// Lowers are the read-only layers, top first. At least one.
	Lowers []string
	// Upper receives every change; empty for a read-only stack.
	Upper string
	// Work is the backend's scratch directory, on the same filesystem as
	// Upper and outside it. Required with Upper.
	Work string
	// Target is the directory where the merged tree appears.
	Target string
	// ReadOnly mounts the stack read-only even when Upper is set.
	ReadOnly bool
	// Namespace is where overlay metadata xattrs live in Upper.
	Namespace Namespace
	// LowerFormat is the format of the lowers that record none
	// (ReadFormat): the kernel's by default. The drop-in mode sets
	// OCIFormat: containers/storage writes the layers it hands a mount
	// program with ".wh." whiteout files (it assumes no mknod), and
	// fuse-overlayfs, which ovl stands in for there, reads them so.
	LowerFormat Format `json:",omitempty"`
	// UIDMapping and GIDMapping translate owners between the layers and
	// the mount, as fuse-overlayfs's uidmapping= and gidmapping= do (a
	// mount program is given them by podman): the layers on disk hold
	// the Container ids of each range, the mount shows them as the Host
	// ids, which a user namespace mapping Container to Host shows its
	// processes as the ids on disk again. Ids on disk outside every range
	// show as the overflow id (65534); a new owner is translated back, and
	// one outside every range is refused. Empty: owners as on disk. Only
	// the FUSE backend implements them; the others refuse a spec with
	// either (IDMapped).
	UIDMapping []IDMapping `json:",omitempty"`
	GIDMapping []IDMapping `json:",omitempty"`
	// Options are optional features; a backend that lacks one refuses it.
	Options Options
}

// IDMapped reports whether s translates owners (UIDMapping, GIDMapping).
func (s Spec) IDMapped() bool { return len(s.UIDMapping) > 0 || len(s.GIDMapping) > 0 }

// Options are the optional overlay features a caller may ask for. Each
// maps to the kernel mount option of the same name.
type Options struct {
	Volatile    bool // no syncs to the upper; the upper is unusable after a crash
	Index       bool
	RedirectDir bool
	Metacopy    bool
	Xino        bool
	// AllowOther lets other users than the mounter use a FUSE mount.
	AllowOther bool
}

// Writable reports whether changes through the stack land in Upper.
func (s Spec) Writable() bool { return s.Upper != "" && !s.ReadOnly }

// Validate checks s for every mistake that would make a mount fail or
// damage a layer on any backend: missing directories, overlapping paths,
// a work dir on another filesystem, and a stack deeper than maxLayers (0
// means no limit). Kernel overlay adds its own rules (an upper on an
// overlay mount: CheckUpperNotOnOverlay). It creates nothing. Errors are
// *SpecError wrapping one of the package's sentinels.
func (s Spec) Validate(maxLayers int) error {
	if len(s.Lowers) == 0 {
		return &SpecError{Field: "lower", Err: ErrIncomplete, Hint: "give at least one lower layer"}
	}
	if maxLayers > 0 && len(s.Lowers) > maxLayers {
		return &SpecError{Field: "lower", Err: fmt.Errorf("%w: %d given, the limit is %d", ErrTooManyLayers, len(s.Lowers), maxLayers),
			Hint: "squash the oldest layers into one, or use a backend without that limit"}
	}
	for _, m := range []struct {
		field string
		ms    []IDMapping
	}{{"uidmapping", s.UIDMapping}, {"gidmapping", s.GIDMapping}} {
		if err := checkIDMapping(m.ms); err != nil {
			return &SpecError{Field: m.field, Err: err, Hint: "give non-empty ranges CONTAINER:HOST:SIZE that overlap on neither side"}
		}
	}
	if (s.Upper == "") != (s.Work == "") {
		return &SpecError{Field: "upper/work", Err: ErrIncomplete, Hint: "upper and work go together: give both or neither"}
	}
	if s.Target == "" {
		return &SpecError{Field: "target", Err: ErrIncomplete, Hint: "name the directory to mount on"}
	}
	type named struct{ field, path string }
	var all []named
	for i, l := range s.Lowers {
		all = append(all, named{fmt.Sprintf("lower[%d]", i), l})
	}
	if s.Upper != "" {
		all = append(all, named{"upper", s.Upper}, named{"work", s.Work})
	}
	all = append(all, named{"target", s.Target})

	abs := make([]string, len(all))
	for i, n := range all {
		if err := isDir(n.path); err != nil {
			return &SpecError{Field: n.field, Path: n.path, Err: err, Hint: "create it first, or fix the path"}
		}
		a, err := Canonical(n.path)
		if err != nil {
			return &SpecError{Field: n.field, Path: n.path, Err: err}
		}
		abs[i] = a
	}
	// Any two of upper, work, target, and any layer, must not nest. Lowers
	// may nest inside each other and repeat here: that is harmless for
	// read-only layers and a union of our own can serve it, but kernel
	// overlayfs (5.x and later) refuses it, so the native backend checks
	// it on top of Validate.
	nLower := len(s.Lowers)
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if i < nLower && j < nLower {
				continue
			}
			a, b := abs[i], abs[j]
			if a == b || Inside(a, b) || Inside(b, a) {
				return &SpecError{Field: all[j].field, Path: all[j].path,
					Err:  fmt.Errorf("%w: %s %s %s %s", ErrOverlap, all[j].field, relation(b, a), all[i].field, all[i].path),
					Hint: "keep upper, work, target and the layers apart"}
			}
		}
	}
	if s.Upper != "" {
		var up, wk unix.Stat_t
		if err := unix.Stat(s.Upper, &up); err != nil {
			return &SpecError{Field: "upper", Path: s.Upper, Err: err}
		}
		if err := unix.Stat(s.Work, &wk); err != nil {
			return &SpecError{Field: "work", Path: s.Work, Err: err}
		}
		if up.Dev != wk.Dev {
			return &SpecError{Field: "work", Path: s.Work, Err: ErrCrossDevice,
				Hint: "put the work directory next to the upper directory"}
		}
	}
	return nil
}

// CheckUpperNotOnOverlay refuses an upper directory that is on an overlay
// mount with ErrNestedOverlay, as kernel overlay does ("not supported as
// upperdir"). The FUSE union and the copy backend take such an upper: a
// layer there gets xattr whiteouts (XattrWhiteouts).
func (s Spec) CheckUpperNotOnOverlay() error {
	if s.Upper == "" {
		return nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(s.Upper, &sfs); err != nil {
		return &SpecError{Field: "upper", Path: s.Upper, Err: err}
	}
	if sfs.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return &SpecError{Field: "upper", Path: s.Upper, Err: ErrNestedOverlay,
			Hint: "kernel overlay keeps upper directories on a plain filesystem (ext4, xfs, btrfs, tmpfs); the fuse backend takes this one"}
	}
	return nil
}

// relation says how path a lies to path b, for "a <relation> b".
func relation(a, b string) string {
	switch {
	case a == b:
		return "is the same directory as"
	case Inside(a, b):
		return "is inside"
	default:
		return "contains"
	}
}

func isDir(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotDir
		}
		return err
	}
	if !fi.IsDir() {
		return ErrNotDir
	}
	return nil
}

// Canonical returns p as an absolute path with symlinks resolved, so that
// two names for one directory compare equal.
func Canonical(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(a)
}

// MakeAbs makes every path of s absolute, so that a mount does not
// depend on the caller's working directory (a daemon has its own).
func (s *Spec) MakeAbs() error {
	ptrs := []*string{&s.Target, &s.Upper, &s.Work}
	for i := range s.Lowers {
		ptrs = append(ptrs, &s.Lowers[i])
	}
	for _, p := range ptrs {
		if *p == "" {
			continue
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("make %s absolute: %w", *p, err)
		}
		*p = a
	}
	return nil
}

// Inside reports whether path a is strictly inside directory b. Both must
// be clean absolute paths.
func Inside(a, b string) bool {
	if b == "/" {
		return a != "/"
	}
	return strings.HasPrefix(a, b+"/")
}

// NamespaceFor is the namespace of the layers a process mounts: Trusted
// for real root (euid 0 in the initial user namespace: privileged says
// so), User for everyone else, whose overlays the kernel mounts with
// userxattr. The caller says which it is; this package reads no process
// state.
func NamespaceFor(privileged bool) Namespace {
	if privileged {
		return Trusted
	}
	return User
}
