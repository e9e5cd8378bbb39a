package builder

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/vagga"
)

// copyPolicy says what a copy into the container keeps of what it
// copies, as vagga's !Copy and !Build say.
type copyPolicy struct {
	// keepModes keeps permission bits (with set-id and sticky bits);
	// otherwise directories and files with the owner's execute bit get
	// 0o777, other files 0o666, less umask.
	keepModes bool
	umask     uint32
	// uid and gid give every entry an owner (container ids); nil keeps
	// the source's.
	uid, gid *int
	// keepTimes keeps access and modification times; otherwise they are
	// 1 (the first second of 1970), for reproducible builds.
	keepTimes bool
}

// copyTimestamp is the time vagga gives copied files: 1970-01-01 00:00:01.
const copyTimestamp = 1

func copyPolicyOf(s *vagga.CopyStep) copyPolicy {
	return copyPolicy{keepModes: s.PreservePermissions, umask: s.Umask, uid: s.OwnerUID, gid: s.OwnerGID, keepTimes: s.PreserveTimes}
}

// buildCopyPolicy is !Build's: modes and owners kept, times 1.
var buildCopyPolicy = copyPolicy{keepModes: true}

// copySource is an entry being copied: a file of the project, of a built
// root, or of the container being built.
type copySource interface {
	relPath() string // below the source; "" for the source itself
	stat() *unix.Stat_t
	open() (*os.File, error)
	readlink() (string, error)
}

func (f *projectFile) relPath() string    { return f.rel }
func (f *projectFile) stat() *unix.Stat_t { return &f.st }

// copyTree copies the entries walk gives (the source first, parents
// before children) to dst, a path relative to the container's root, as
// pol says. Directories get their times last, when nothing more is
// written into them.
func copyTree(w *writer, walk func(fn func(copySource) error) error, dst string, pol copyPolicy, p Progress) error {
	type dirTimes struct {
		path string
		st   unix.Stat_t
	}
	var dirs []dirTimes
	err := walk(func(f copySource) error {
		target := dst
		if f.relPath() != "" {
			target = path.Join(dst, f.relPath())
		}
		st := f.stat()
		p.Add(st.Size)
		if err := copyEntry(w, f, target, pol); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			dirs = append(dirs, dirTimes{w.up(target), *st})
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK || st.Mode&unix.S_IFMT == unix.S_IFREG {
			return setTimes(w.up(target), st, pol.keepTimes)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setTimes(dirs[i].path, &dirs[i].st, pol.keepTimes); err != nil {
			return err
		}
	}
	return nil
}

// setTimes gives p (not following a symlink) the times of st, or 1.
func setTimes(p string, st *unix.Stat_t, keep bool) error {
	ts := []unix.Timespec{{Sec: copyTimestamp}, {Sec: copyTimestamp}}
	if keep {
		ts = []unix.Timespec{st.Atim, st.Mtim}
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "set times", Path: p, Err: err}
	}
	return nil
}

// copyMode is the mode pol gives an entry of mode m.
func (pol copyPolicy) copyMode(m uint32) os.FileMode {
	if pol.keepModes {
		return os.FileMode(m).Perm() | modeBits(m)
	}
	base := uint32(0o666)
	if m&unix.S_IFMT == unix.S_IFDIR || m&0o100 != 0 {
		base = 0o777
	}
	return os.FileMode(base &^ pol.umask)
}

// owner is the container's owner pol gives an entry the builder sees
// owned by st's ids.
func (pol copyPolicy) owner(w *writer, st *unix.Stat_t) (int, int) {
	uid, gid := w.owners.fromLocal(int(st.Uid), int(st.Gid))
	if pol.uid != nil {
		uid = *pol.uid
	}
	if pol.gid != nil {
		gid = *pol.gid
	}
	return uid, gid
}

func copyEntry(w *writer, f copySource, dst string, pol copyPolicy) error {
	st := f.stat()
	mode := pol.copyMode(st.Mode)
	uid, gid := pol.owner(w, st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return w.dir(dst, mode, uid, gid)
	case unix.S_IFLNK:
		t, err := f.readlink()
		if err != nil {
			return err
		}
		return w.symlink(dst, t, uid, gid, true)
	case unix.S_IFREG:
		file, err := f.open()
		if err != nil {
			return err
		}
		defer file.Close()
		return w.writeFile(dst, file, mode, uid, gid, true)
	}
	return nil // sockets, fifos, devices are not copied
}

// copyIn copies the source of !Copy s into the container: a file or
// directory of the project in dir (read as walkProject does, never
// through a symlink out of it), or of the container being built.
func copyIn(w *writer, dir string, s *vagga.CopyStep, p Progress) error {
	filter, err := newCopyFilter(s.Filter)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPath, err)
	}
	walk := func(fn func(copySource) error) error {
		return walkProject(dir, s.HostSource, walkOptions{filter: filter}, func(f *projectFile) error { return fn(f) })
	}
	if s.InContainer {
		walk, err = w.unionWalk(rel(s.Source), filter)
		if err != nil {
			return err
		}
	}
	return copyTree(w, walk, rel(s.Path), copyPolicyOf(s), p)
}

// unionFile is an entry of the container being built, in the layer that
// shows it.
type unionFile struct {
	rel  string
	host string
	st   unix.Stat_t
}

func (f *unionFile) relPath() string    { return f.rel }
func (f *unionFile) stat() *unix.Stat_t { return &f.st }

func (f *unionFile) open() (*os.File, error) {
	return os.OpenFile(f.host, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
}

func (f *unionFile) readlink() (string, error) { return os.Readlink(f.host) }

// unionWalk lists the tree at src of the container being built (what
// the step sees: upper over the lowers), with what filter takes, and
// returns a walk over that list: the tree is listed first, so that a
// copy into itself (source /a, path /a/b) ends.
func (w *writer) unionWalk(src string, filter *copyFilter) (func(fn func(copySource) error) error, error) {
	u := w.full()
	if err := w.noSymlinkParent(src); err != nil {
		return nil, err
	}
	host, st, found, err := u.lookup(src)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: /%s does not exist in the container", ErrPath, src)
	}
	entries := []copySource{&unionFile{host: host, st: st}}
	var walk func(relDir string, pending []copySource) (bool, error)
	walk = func(relDir string, pending []copySource) (bool, error) {
		dirs, err := u.dirs(joinRel(src, relDir))
		if err != nil {
			return false, err
		}
		names, err := list(dirs)
		if err != nil {
			return false, err
		}
		emitted := false
		for _, n := range names {
			r := joinRel(relDir, n)
			host, st, found, err := u.lookup(joinRel(src, r))
			if err != nil {
				return emitted, err
			}
			if !found {
				continue
			}
			e := &unionFile{rel: r, host: host, st: st}
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			yield, descend := filter.decide(r, isDir)
			var below []copySource
			if yield {
				entries = append(append(entries, pending...), e)
				pending, emitted = nil, true
			} else {
				below = append(append([]copySource(nil), pending...), e)
			}
			if isDir && descend {
				sub, err := walk(r, below)
				if sub {
					pending, emitted = nil, true
				}
				if err != nil {
					return emitted, err
				}
			}
		}
		return emitted, nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if _, err := walk("", nil); err != nil {
			return nil, err
		}
	}
	return func(fn func(copySource) error) error {
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// buildCopy copies the source of !Build s from root, the source
// container's built root, into the container: modes and owners kept,
// times 1, what s's rules take (vagga's default ignore-regex without
// rules).
func buildCopy(w *writer, root string, s *vagga.BuildStep, p Progress) error {
	filter, err := newCopyFilter(vagga.PathFilter{Rules: s.Rules, NoDefaultRules: true})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPath, err)
	}
	src := filepath.Join(root, filepath.FromSlash(rel(s.Source)))
	if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist in container %q", ErrPath, s.Source, s.Container)
	}
	walk := func(fn func(copySource) error) error {
		return walkProject(root, src, walkOptions{filter: filter}, func(f *projectFile) error { return fn(f) })
	}
	return copyTree(w, walk, rel(s.Path), buildCopyPolicy, p)
}
