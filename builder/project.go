package builder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/beneath"
)

// ErrOutsideProject reports a project path a step reads that leads out of
// the project directory through a symlink. An untrusted project's author
// chooses its symlinks (a committed `leak -> /root`, or one a container's
// command wrote into /work), and a build may run as root: so ovl reads
// project files only beneath the project directory. It matches ErrPath.
var ErrOutsideProject = errors.New("leads out of the project directory through a symlink")

// projectFile is a file or directory of the project, reached without
// following a symlink out of the project: the directory holding it, open
// at dirfd, and its name there; or, for the start of a walk, name "" and
// dirfd an O_PATH descriptor of the file itself. Reading through
// descriptors rather than paths means that nothing swapped into the tree
// during a walk leads out of it either.
type projectFile struct {
	rel   string // below the walk's start, slash-separated; "" for the start
	dirfd int
	name  string
	st    unix.Stat_t
}

func (f *projectFile) isDir() bool  { return f.st.Mode&unix.S_IFMT == unix.S_IFDIR }
func (f *projectFile) isLink() bool { return f.st.Mode&unix.S_IFMT == unix.S_IFLNK }
func (f *projectFile) isReg() bool  { return f.st.Mode&unix.S_IFMT == unix.S_IFREG }

// openFD opens the file with flags, never following a symlink at it.
func (f *projectFile) openFD(flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	if f.name == "" {
		if flags&unix.O_DIRECTORY != 0 {
			return unix.Openat(f.dirfd, ".", flags, 0)
		}
		// Reopen the descriptor: it is the file itself, resolved already.
		return unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.dirfd), flags, 0)
	}
	return unix.Openat(f.dirfd, f.name, flags|unix.O_NOFOLLOW, 0)
}

// open opens the regular file for reading. O_NONBLOCK: a fifo swapped in
// after the walk's lstat must not block the build.
func (f *projectFile) open() (*os.File, error) {
	fd, err := f.openFD(unix.O_RDONLY | unix.O_NONBLOCK)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: f.rel, Err: err}
	}
	file := os.NewFile(uintptr(fd), f.rel)
	fi, err := file.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &os.PathError{Op: "open", Path: f.rel, Err: errors.New("changed from a regular file while being read")}
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

// readlink returns the symlink's target.
func (f *projectFile) readlink() (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(f.dirfd, f.name, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: f.rel, Err: err}
	}
	return string(buf[:n]), nil
}

// projectRel returns p, a host path the vagga parser resolved inside the
// project directory dir, relative to dir ("." for dir itself).
func projectRel(dir, p string) (string, error) {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: %s is not in the project directory %s", ErrPath, p, dir)
	}
	return rel, nil
}

// outsideError names the project path that leads out, for an error of
// beneath.Open.
func outsideError(dir, p string, err error) error {
	if errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%w: %w: %s (ovl reads a project's files only inside %s: copy what the step needs into the project)", ErrPath, ErrOutsideProject, p, dir)
	}
	return &os.PathError{Op: "open", Path: p, Err: err}
}

// openProjectFile opens the project file p for reading. Symlinks on the
// way, p itself included, are followed only while they stay inside the
// project directory dir.
func openProjectFile(dir, p string) (*os.File, error) {
	var file *os.File
	err := walkProject(dir, p, walkOptions{followStart: true}, func(f *projectFile) error {
		if !f.isReg() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		var err error
		file, err = f.open()
		return err
	})
	return file, err
}

// walkOptions say how walkProject treats a tree.
type walkOptions struct {
	// followStart follows the start path itself when it is a symlink
	// (that stays inside the project): a tarball or !Depends path names
	// the file behind it, while a !Copy source is copied as what it is.
	followStart bool
	// filter decides which entries below the start are taken (and, with
	// them, the directories on their way); nil takes everything. The
	// start is always taken.
	filter *copyFilter
}

// walkProject calls fn for the project path p and, when it is a
// directory, for what its filter takes below it, parents before
// children, in name order. The directories on the way to p may be
// symlinks that stay inside the project directory dir; below p nothing
// is followed.
func walkProject(dir, p string, o walkOptions, fn func(f *projectFile) error) error {
	rel, err := projectRel(dir, p)
	if err != nil {
		return err
	}
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirfd)
	flags := unix.O_PATH
	if !o.followStart {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := beneath.Open(dirfd, rel, flags, beneath.Inside)
	if err != nil {
		return outsideError(dir, p, err)
	}
	defer unix.Close(fd)
	start := &projectFile{dirfd: fd}
	if err := unix.Fstat(fd, &start.st); err != nil {
		return &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if err := fn(start); err != nil || !start.isDir() {
		return err
	}
	_, err = walkFrom(start, nil, o.filter, fn)
	return err
}

// walkFrom walks what is below the directory f, whose entries the filter
// decides about. pending are the directories above f (f included, last)
// not given to fn yet: they are, just before the first entry below them
// that is taken; emitted reports that this happened.
func walkFrom(f *projectFile, pending []*projectFile, filter *copyFilter, fn func(*projectFile) error) (emitted bool, err error) {
	fd, err := f.openFD(unix.O_RDONLY | unix.O_DIRECTORY)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: f.rel, Err: err}
	}
	d := os.NewFile(uintptr(fd), f.rel)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return false, &os.PathError{Op: "readdir", Path: f.rel, Err: err}
	}
	sort.Strings(names)
	for _, n := range names {
		c := &projectFile{rel: joinRel(f.rel, n), dirfd: fd, name: n}
		if err := unix.Fstatat(fd, n, &c.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed since the listing
			}
			return emitted, &os.PathError{Op: "lstat", Path: c.rel, Err: err}
		}
		yield, descend := filter.decide(c.rel, c.isDir())
		var below []*projectFile
		if yield {
			for _, p := range pending {
				if err := fn(p); err != nil {
					return emitted, err
				}
			}
			pending, emitted = nil, true
			if err := fn(c); err != nil {
				return emitted, err
			}
		} else {
			below = append(append([]*projectFile(nil), pending...), c)
		}
		if c.isDir() && descend {
			sub, err := walkFrom(c, below, filter, fn)
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

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
