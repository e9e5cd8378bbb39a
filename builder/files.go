package builder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/beneath"
	"github.com/ovl-dev/ovl/layer"
)

// ErrPath reports a path of a file step that cannot be used as asked: a
// missing parent directory, a file where a directory is needed, a path
// through a symlink.
var ErrPath = errors.New("unusable path")

// writer applies file steps to a layer being written (upper) over the
// layers below it, in layer format, without mounting anything: new and
// changed files go into upper, directories they need are copied up with
// their metadata, deletions become whiteouts. It never follows a symlink
// of the container, so nothing is written outside upper.
type writer struct {
	upper  string
	lowers union
	owners owners          // what to chown files to
	ns     layer.Namespace // of overlay xattrs the writer sets
}

func newWriter(upper string, lowers []string, o owners, ns layer.Namespace) *writer {
	return &writer{upper: upper, lowers: lowers, owners: o, ns: ns}
}

// full is the union as the step sees it: upper over the lowers.
func (w *writer) full() union { return append(union{w.upper}, w.lowers...) }

func (w *writer) up(rel string) string { return filepath.Join(w.upper, filepath.FromSlash(rel)) }

func pathErr(rel, msg string) error {
	return fmt.Errorf("%w: /%s %s", ErrPath, rel, msg)
}

// ensureDir makes rel a directory of upper that stands for the merged
// directory rel: existing directories below are copied up (mode, owner,
// times); missing ones are created (mode 0755) only if create is set.
// With replace, a non-directory at rel itself is replaced by a directory.
func (w *writer) ensureDir(rel string, create, replace bool) error {
	parts := splitRel(rel)
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		path, st, found, err := w.full().lookup(p)
		if err != nil {
			return err
		}
		if found && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if path == w.up(p) {
				continue
			}
			if err := w.clearUpper(p); err != nil {
				return err
			}
			if err := os.Mkdir(w.up(p), 0o700); err != nil {
				return err
			}
			if err := layer.CopyMetadata(path, w.up(p)); err != nil {
				return err
			}
			continue
		}
		if found {
			kind := "is not a directory"
			if st.Mode&unix.S_IFMT == unix.S_IFLNK {
				kind = "is a symlink (ovl does not follow symlinks in build paths: name the real directory)"
			}
			if !(last && replace) {
				return pathErr(p, kind)
			}
		} else if !create {
			return pathErr(p, "does not exist (add !EnsureDir /"+p+" before this step)")
		}
		if err := w.newDir(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// newDir creates rel in upper as a new, empty directory of the union:
// whatever upper held there is removed and every entry the lowers would
// show through it is whited out.
func (w *writer) newDir(rel string, mode os.FileMode) error {
	if err := w.clearUpper(rel); err != nil {
		return err
	}
	if err := os.Mkdir(w.up(rel), mode); err != nil {
		return err
	}
	if err := os.Chmod(w.up(rel), mode); err != nil { // past the umask
		return err
	}
	below, err := w.lowers.dirs(rel)
	if err != nil || below == nil {
		return err
	}
	names, err := list(below)
	if err != nil {
		return err
	}
	return w.whiteout(rel, names...)
}

// whiteout hides names of directory rel of the lowers. rel must be a
// directory of upper.
func (w *writer) whiteout(rel string, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	fd, err := unix.Open(w.up(rel), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: w.up(rel), Err: err}
	}
	defer unix.Close(fd)
	for _, n := range names {
		if err := layer.MakeWhiteout(fd, n, w.ns); err != nil {
			return fmt.Errorf("%s: %w", w.up(rel), err)
		}
	}
	return nil
}

// clearUpper removes what upper holds at rel: an entry or a whiteout
// (which the kernel's format keeps at the name itself). Lower layers are
// not touched.
func (w *writer) clearUpper(rel string) error {
	return removeAll(w.up(rel))
}

// prepare readies rel for a new non-directory: its parent must exist
// (created first with mkParents), and whatever is at rel goes.
func (w *writer) prepare(rel string, mkParents bool) error {
	if err := w.ensureDir(parentRel(rel), mkParents, false); err != nil {
		return err
	}
	return w.clearUpper(rel)
}

func parentRel(rel string) string {
	d := filepath.Dir(rel)
	if d == "." {
		return ""
	}
	return d
}

// remove deletes rel from the union: from upper, and with a whiteout if
// a lower layer still shows it. A missing path is not an error.
func (w *writer) remove(rel string) error {
	_, _, found, err := w.full().lookup(rel)
	if err != nil {
		return err
	}
	if !found {
		return w.noSymlinkParent(rel)
	}
	if err := w.ensureDir(parentRel(rel), false, false); err != nil {
		return err
	}
	if err := w.clearUpper(rel); err != nil {
		return err
	}
	if _, _, found, err = w.full().lookup(rel); err != nil || !found {
		return err
	}
	return w.whiteout(parentRel(rel), filepath.Base(rel))
}

// noSymlinkParent returns an error if a parent directory of rel is a
// symlink in the union: a path through it names something the build
// cannot see without following links, so a missing rel means nothing.
func (w *writer) noSymlinkParent(rel string) error {
	parts := splitRel(rel)
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		_, st, found, err := w.full().lookup(p)
		if err != nil || !found {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return pathErr(p, "is a symlink (ovl does not follow symlinks in build paths: name the real directory)")
		}
	}
	return nil
}

// emptyDir makes rel an empty directory, creating it (and its parents)
// if missing.
func (w *writer) emptyDir(rel string) error {
	if err := w.ensureDir(rel, true, false); err != nil {
		return err
	}
	dirs, err := w.full().dirs(rel)
	if err != nil {
		return err
	}
	names, err := list(dirs)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := w.remove(rel + "/" + n); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes a regular file at rel with content, mode and owner.
func (w *writer) writeFile(rel string, r io.Reader, mode os.FileMode, uid, gid int, mkParents bool) error {
	if err := w.prepare(rel, mkParents); err != nil {
		return err
	}
	p := w.up(rel)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := w.chown(p, uid, gid); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// link makes rel a hard link to oldRel, a file this step already put in
// upper (a tarball's hard link to an earlier entry). Both paths are
// resolved inside upper with no symlink on the way: the step may have
// made symlinks that point anywhere on the host, and a link through one
// would put a host file into the layer. rel's parent must exist.
func (w *writer) link(oldRel, rel string) error {
	upper, err := unix.Open(w.upper, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: w.upper, Err: err}
	}
	defer unix.Close(upper)
	var dirs [2]int
	for i, r := range []string{parentRel(oldRel), parentRel(rel)} {
		fd, err := beneath.Open(upper, r, unix.O_PATH|unix.O_DIRECTORY, beneath.NoSymlinks)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return pathErr(r, "goes through a symlink (links are resolved inside the container, never through a symlink)")
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: "/" + r, Err: err}
		}
		defer unix.Close(fd)
		dirs[i] = fd
	}
	if err := unix.Linkat(dirs[0], filepath.Base(oldRel), dirs[1], filepath.Base(rel), 0); err != nil {
		return &os.LinkError{Op: "link", Old: "/" + oldRel, New: "/" + rel, Err: err}
	}
	return nil
}

// symlink creates a symlink at rel.
func (w *writer) symlink(rel, target string, uid, gid int, mkParents bool) error {
	if err := w.prepare(rel, mkParents); err != nil {
		return err
	}
	if err := os.Symlink(target, w.up(rel)); err != nil {
		return err
	}
	return w.chown(w.up(rel), uid, gid)
}

// dir makes rel a directory with mode and owner, merging with what the
// union has there and replacing a non-directory.
func (w *writer) dir(rel string, mode os.FileMode, uid, gid int) error {
	if err := w.ensureDir(parentRel(rel), true, false); err != nil {
		return err
	}
	if err := w.ensureDir(rel, true, true); err != nil {
		return err
	}
	if err := w.chown(w.up(rel), uid, gid); err != nil {
		return err
	}
	return os.Chmod(w.up(rel), mode)
}

// chown makes the container see p owned by uid:gid, as w.owners says:
// an ordinary user without subordinate ids keeps its own files (its uid
// is root inside the container's user namespace).
func (w *writer) chown(p string, uid, gid int) error {
	u, g, keep, err := w.owners.chownIDs(uid, gid)
	if err != nil {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(p, w.upper), err)
	}
	if !keep {
		return nil
	}
	return os.Lchown(p, u, g)
}

// modeBits converts setuid, setgid and sticky from a raw mode.
func modeBits(m uint32) os.FileMode {
	var out os.FileMode
	if m&unix.S_ISUID != 0 {
		out |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		out |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		out |= os.ModeSticky
	}
	return out
}
