package layer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The merge walk: how a stack of layers shows one directory. Every reader
// of a stack (fusefs, the build engine's file steps, Diff) goes through
// Lookup and List, so the rules live here once (Linux:
// fs/overlayfs/namei.c ovl_lookup, readdir.c ovl_dir_read_merged):
//
//   - layers are read top first;
//   - a whiteout ends the walk: the name is deleted and nothing below it
//     shows;
//   - a non-directory hides everything below it, and a directory hides the
//     non-directories below it;
//   - directories of one name merge, down to the first opaque one.

// Dir is one layer's copy of a directory of the union.
type Dir struct {
	// Fd is a descriptor of the directory. Lookup needs no more than
	// O_PATH; List opens a readable descriptor of its own through it.
	Fd int
	// Opacity says how the copy merges with the layers below it
	// (Reader.Opacity).
	Opacity Opacity
	// Format is the format of the copy's layer (ReadFormat on its root).
	Format Format
	// Owned tells Lookup and List to close Fd when done with it.
	Owned bool
}

// Stack is one directory of a union: its copies in the layers that make
// it up, top first.
type Stack interface {
	// Len is the number of layers.
	Len() int
	// MayHold reports whether layer i may hold name or a whiteout of it;
	// false skips the layer without a system call (an index of an
	// immutable lower layer, or a walk that leaves out the upper).
	MayHold(i int, name string) bool
	// Dir returns layer i's copy.
	Dir(i int) (Dir, error)
}

// NameRecorder is a Stack that wants every name List reads in a layer's
// copy, whiteouts and markers included (to index an immutable lower
// layer without reading the directory a second time). List calls
// Names(i, names) once it has read copy i to its end.
type NameRecorder interface {
	Names(i int, names []string)
}

// Dirs is a Stack of directories already open: the copies a Lookup
// returns for a directory, or the roots of a stack's layers.
type Dirs []Dir

// Len is the number of copies.
func (s Dirs) Len() int { return len(s) }

// MayHold is always true: every copy is asked.
func (s Dirs) MayHold(int, string) bool { return true }

// Dir returns copy i as it is (the caller closes it, not the walk).
func (s Dirs) Dir(i int) (Dir, error) {
	d := s[i]
	d.Owned = false
	return d, nil
}

// Close closes every descriptor of s that is open (>= 0).
func (s Dirs) Close() {
	for i := range s {
		if s[i].Fd >= 0 {
			unix.Close(s[i].Fd)
			s[i].Fd = -1
		}
	}
}

// DirPath names one layer's copy of a directory of the union, with the
// layer's format: what a walk by path (Diff, the build engine's union)
// carries from a layer's root down to its subdirectories.
type DirPath struct {
	Path   string
	Format Format
}

// Child names directory name of d, in the same layer.
func (d DirPath) Child(name string) DirPath {
	return DirPath{Path: filepath.Join(d.Path, name), Format: d.Format}
}

// Roots returns the roots of layers (top first), each with the format it
// records (ReadFormat).
func Roots(layers []string) ([]DirPath, error) {
	out := make([]DirPath, len(layers))
	for i, l := range layers {
		fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: l, Err: err}
		}
		f, err := ReadFormat(fd)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l, err)
		}
		out[i] = DirPath{Path: l, Format: f}
	}
	return out, nil
}

// OpenDirs opens dirs (top first, each a layer's copy of one directory)
// with their opacity, as a Stack. ns limits the overlay xattrs honoured
// to those namespaces (default: both). The caller closes the result.
func OpenDirs(dirs []DirPath, ns ...Namespace) (Dirs, error) {
	out := make(Dirs, 0, len(dirs))
	for _, d := range dirs {
		fd, err := unix.Open(d.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			out.Close()
			return nil, &os.PathError{Op: "open", Path: d.Path, Err: err}
		}
		op, err := Reader{Format: d.Format, NS: ns}.Opacity(fd)
		if err != nil {
			unix.Close(fd)
			out.Close()
			return nil, fmt.Errorf("%s: %w", d.Path, err)
		}
		out = append(out, Dir{Fd: fd, Opacity: op, Format: d.Format})
	}
	return out, nil
}

// HitKind says what a Lookup found for a name.
type HitKind int

const (
	// HitNone: no layer has the name.
	HitNone HitKind = iota
	// HitWhiteout: a layer deletes the name; nothing below it shows.
	HitWhiteout
	// HitNonDir: a file, symlink or node, from exactly one layer.
	HitNonDir
	// HitDir: a directory, merged from one or more layers.
	HitDir
)

func (k HitKind) String() string {
	return [...]string{"none", "whiteout", "non-directory", "directory"}[k]
}

// Exists reports whether a name of this kind shows in the union.
func (k HitKind) Exists() bool { return k == HitNonDir || k == HitDir }

// Hit is the result of Lookup.
type Hit struct {
	Kind HitKind
	// Layers are the stack positions (0 is the top) of what was found,
	// top first: the one layer of a non-directory, every layer a
	// directory merges (the walk stops below an opaque one), the layer of
	// a whiteout; none for HitNone.
	Layers []int
	// Stat is the lstat of the top copy (HitNonDir, HitDir) or of the
	// whiteout.
	Stat unix.Stat_t
	// Bottom is, for a directory, the lstat of its bottom-most copy, whose
	// inode number names a merged directory.
	Bottom unix.Stat_t
	// Dirs are, for a directory, its copies, parallel to Layers: opened by
	// Lookup without following symlinks (for reading where allowed, O_PATH
	// otherwise), each with its opacity. They are the child's Stack, and
	// the caller's to close (Dirs.Close).
	Dirs Dirs
}

// Lookup walks name down the layers of s, top first, and says what the
// union shows for it (see the rules above). ns limits the overlay xattrs
// honoured to those namespaces (default: both). On error, nothing stays
// open.
func Lookup(s Stack, name string, ns ...Namespace) (Hit, error) {
	var h Hit
	n := s.Len()
	for i := 0; i < n; i++ {
		if !s.MayHold(i, name) {
			continue
		}
		d, err := s.Dir(i)
		if err != nil {
			h.Dirs.Close()
			return Hit{}, err
		}
		stop, err := h.step(Reader{Format: d.Format, NS: ns}, i, d, name)
		if d.Owned {
			unix.Close(d.Fd)
		}
		if err != nil {
			h.Dirs.Close()
			return Hit{}, err
		}
		if stop {
			break
		}
	}
	return h, nil
}

// step looks name up in layer i's copy d (read by r), adds what it
// finds to h, and reports whether the walk ends there.
func (h *Hit) step(r Reader, i int, d Dir, name string) (stop bool, err error) {
	if r.Format == OCIFormat && strings.HasPrefix(name, WhiteoutPrefix) {
		return false, nil // whiteouts and markers there, never names
	}
	var st unix.Stat_t
	err = unix.Fstatat(d.Fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) && r.Format == OCIFormat {
		// An OCI whiteout file hides name without an entry of that name.
		var wst unix.Stat_t
		if unix.Fstatat(d.Fd, WhiteoutPrefix+name, &wst, unix.AT_SYMLINK_NOFOLLOW) == nil {
			h.whiteout(i, &wst)
			return true, nil
		}
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if kind, _ := r.Classify(d.Fd, name, &st, d.Opacity); kind == Whiteout {
		h.whiteout(i, &st)
		return true, nil
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if h.Kind == HitDir && !isDir {
		return true, nil // hidden by the directory above
	}
	if !isDir {
		h.Kind, h.Layers, h.Stat = HitNonDir, []int{i}, st
		return true, nil
	}
	fd, err := openDirAt(d.Fd, name)
	if err != nil {
		return false, err
	}
	op, err := r.Opacity(fd)
	if err != nil {
		unix.Close(fd)
		return false, err
	}
	if h.Kind == HitNone {
		h.Kind, h.Stat = HitDir, st
	}
	h.Layers = append(h.Layers, i)
	h.Dirs = append(h.Dirs, Dir{Fd: fd, Opacity: op, Format: d.Format})
	h.Bottom = st
	return op == OpaqueDir, nil
}

// whiteout records a whiteout in layer i, which ends the walk; below a
// directory already found it only cuts the merge.
func (h *Hit) whiteout(i int, st *unix.Stat_t) {
	if h.Kind == HitNone {
		h.Kind, h.Layers, h.Stat = HitWhiteout, []int{i}, *st
	}
}

// openDirAt opens directory name of dirfd without following a symlink:
// for reading where allowed, as O_PATH otherwise.
func openDirAt(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) {
		fd, err = unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	return fd, err
}

// Listed is one name of a merged listing (List).
type Listed struct {
	Name string
	// Mode is the file type (S_IFMT bits) of the top copy.
	Mode uint32
	// Ino and Dev identify the top copy: its inode number as its layer's
	// directory lists it, and that directory's device.
	Ino, Dev uint64
	// Layer is the stack position of the top copy.
	Layer int
	// Merged is set for a directory that more than one layer has (before
	// opacity: Lookup says exactly which copies merge).
	Merged bool
}

// List reads the merged listing of s: each name once, from its top-most
// copy; a whiteout hides the name below it and is not shown, nor are
// markers; layers below an opaque copy are not read. max > 0 stops after
// that many names (an emptiness check is max 1). The result is a
// snapshot, in the order the layers list their entries, top layer first.
// ns limits the overlay xattrs honoured to those namespaces (default:
// both).
func List(s Stack, max int, ns ...Namespace) ([]Listed, error) {
	var out []Listed
	index := map[string]int{} // name -> index in out; -1 for hidden by a whiteout
	rec, _ := s.(NameRecorder)
	n := s.Len()
	for i := 0; i < n; i++ {
		d, err := s.Dir(i)
		if err != nil {
			return nil, err
		}
		r := Reader{Format: d.Format, NS: ns}
		var names []string
		if rec != nil {
			names = []string{}
		}
		fd, err := unix.Openat(d.Fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if d.Owned {
			unix.Close(d.Fd)
		}
		if err != nil {
			return nil, err
		}
		var dst unix.Stat_t
		if err := unix.Fstat(fd, &dst); err != nil {
			unix.Close(fd)
			return nil, err
		}
		complete := true
		err = readDirents(fd, func(e dirent) bool {
			if names != nil {
				names = append(names, e.name)
			}
			mode := dtToMode(e.typ)
			var st *unix.Stat_t
			if mode == 0 || mode == unix.S_IFCHR || (d.Opacity == HasXattrWhiteouts && mode == unix.S_IFREG) {
				st = new(unix.Stat_t)
				if unix.Fstatat(fd, e.name, st, unix.AT_SYMLINK_NOFOLLOW) != nil {
					return true // gone meanwhile
				}
				mode = st.Mode & unix.S_IFMT
			}
			kind, target := r.Classify(fd, e.name, st, d.Opacity)
			switch kind {
			case Opaque, Meta:
				return true
			case Whiteout:
				if _, seen := index[target]; !seen {
					index[target] = -1
				}
				return true
			}
			if j, seen := index[e.name]; seen {
				if j >= 0 && out[j].Mode == unix.S_IFDIR && mode == unix.S_IFDIR {
					out[j].Merged = true
				}
				return true
			}
			index[e.name] = len(out)
			out = append(out, Listed{Name: e.name, Mode: mode, Ino: e.ino, Dev: dst.Dev, Layer: i})
			complete = max <= 0 || len(out) < max
			return complete
		})
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		if names != nil && complete {
			rec.Names(i, names)
		}
		if (max > 0 && len(out) >= max) || d.Opacity == OpaqueDir {
			break
		}
	}
	return out, nil
}

// dirent is one entry of a directory as getdents64 gives it.
type dirent struct {
	ino  uint64
	typ  uint8
	name string
}

// readDirents lists the directory open at fd (a readable descriptor of
// its own: reading moves its offset) with inode numbers and types, which
// os.ReadDir does not give, until fn returns false.
func readDirents(fd int, fn func(dirent) bool) error {
	buf := make([]byte, 64<<10)
	for {
		m, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("getdents: %w", err)
		}
		if m <= 0 {
			return nil
		}
		for off := 0; off < m; {
			// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
			rec := buf[off:]
			reclen := int(binary.NativeEndian.Uint16(rec[16:18]))
			nameb := rec[19:reclen]
			for i, c := range nameb {
				if c == 0 {
					nameb = nameb[:i]
					break
				}
			}
			off += reclen
			if s := string(nameb); s != "." && s != ".." {
				if !fn(dirent{ino: binary.NativeEndian.Uint64(rec[0:8]), typ: rec[18], name: s}) {
					return nil
				}
			}
		}
	}
}

// dtToMode turns a dirent type into S_IFMT bits, 0 for DT_UNKNOWN.
func dtToMode(t uint8) uint32 {
	switch t {
	case unix.DT_REG:
		return unix.S_IFREG
	case unix.DT_DIR:
		return unix.S_IFDIR
	case unix.DT_LNK:
		return unix.S_IFLNK
	case unix.DT_CHR:
		return unix.S_IFCHR
	case unix.DT_BLK:
		return unix.S_IFBLK
	case unix.DT_FIFO:
		return unix.S_IFIFO
	case unix.DT_SOCK:
		return unix.S_IFSOCK
	}
	return 0
}
