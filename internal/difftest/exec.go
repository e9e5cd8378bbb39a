package difftest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Result is what one operation returned: its errno (0 for success) and,
// for readdir, the listing ("name/type" entries, sorted).
type Result struct {
	Errno unix.Errno
	Out   string
}

func (r Result) String() string {
	s := "ok"
	if r.Errno != 0 {
		s = errnoName(r.Errno)
	}
	if r.Out != "" {
		s += " [" + r.Out + "]"
	}
	return s
}

// Brief is String without a readdir's listing or a read's hash.
func (r Result) Brief() string {
	if r.Errno != 0 {
		return unix.ErrnoName(r.Errno)
	}
	return "ok"
}

// errnoName prints an errno as its symbol with its text, e.g.
// "EXDEV (invalid cross-device link)".
func errnoName(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return fmt.Sprintf("%s (%v)", n, e)
	}
	return fmt.Sprintf("errno %d (%v)", int(e), e)
}

// Executor runs operations inside one mounted tree. It holds an O_PATH
// descriptor of the root, and every path is resolved from there with
// RESOLVE_IN_ROOT, so no symlink in the tree leads out of it.
type Executor struct {
	root int
	fds  [slots]int // descriptors held across ops (OpOpen), -1 when closed
	// Lowers are the stack's lower layers, top first, and Outside a
	// directory outside them, for Widen's ops that change a layer under
	// the mount.
	Lowers  []string
	Outside string
}

// NewExecutor opens the tree at dir.
func NewExecutor(dir string) (*Executor, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	x := &Executor{root: fd}
	for i := range x.fds {
		x.fds[i] = -1
	}
	return x, nil
}

// Close releases the root descriptor and those OpOpen left open; call it
// before unmounting.
func (x *Executor) Close() error {
	for i, fd := range x.fds {
		if fd >= 0 {
			unix.Close(fd)
			x.fds[i] = -1
		}
	}
	return unix.Close(x.root)
}

// slot returns the descriptor held in slot i, or EBADF.
func (x *Executor) slot(i int) (int, error) {
	if x.fds[i] < 0 {
		return -1, unix.EBADF
	}
	return x.fds[i], nil
}

// Run performs op and returns its result.
func (x *Executor) Run(op Op) Result {
	var out string
	var err error
	if op.User != 0 {
		out, err = asUser(op.User, func() (string, error) { return x.run(op) })
	} else {
		out, err = x.run(op)
	}
	var errno unix.Errno
	if err != nil && !errors.As(err, &errno) {
		errno = unix.EIO // not a syscall error: should not happen
	}
	return Result{Errno: errno, Out: out}
}

// open resolves p (relative to the root; "" is the root) and opens it.
func (x *Executor) open(p string, flags int, mode uint32) (int, error) {
	if p == "" {
		p = "."
	}
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(mode)
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(x.root, p, how)
		// With RESOLVE_IN_ROOT, openat2 fails with EAGAIN when any rename
		// or mount on the machine races with resolving "..": retry.
		if !errors.Is(err, unix.EAGAIN) || i == 1000 {
			return fd, err
		}
	}
}

// parent opens the directory holding p and returns it with p's last
// component; the caller closes the descriptor.
func (x *Executor) parent(p string) (int, string, error) {
	dir, base := path.Split(p)
	if base == "" {
		return -1, "", unix.EINVAL
	}
	fd, err := x.open(strings.TrimSuffix(dir, "/"), unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, base, err
}

// inParent runs fn with the parent of p and p's last component.
func (x *Executor) inParent(p string, fn func(dirfd int, name string) error) error {
	fd, base, err := x.parent(p)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd, base)
}

// withFile opens p with flags and runs fn on the descriptor.
func (x *Executor) withFile(p string, flags int, fn func(fd int) error) error {
	return x.withFileMode(p, flags, 0, fn)
}

// withFileMode is withFile with the mode of a file O_CREAT makes.
func (x *Executor) withFileMode(p string, flags int, mode uint32, fn func(fd int) error) error {
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NONBLOCK // a fifo must not block the run
	}
	fd, err := x.open(p, flags, mode)
	if err != nil {
		return err
	}
	err = fn(fd)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

func procPath(fd int, name string) string {
	if name == "" {
		return fmt.Sprintf("/proc/self/fd/%d", fd)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, name)
}

func (x *Executor) run(op Op) (string, error) {
	if op.Kind >= extraOpBase {
		return x.runExtra(op)
	}
	switch op.Kind {
	case OpCreate:
		return "", x.withFileMode(op.Path, unix.O_CREAT|unix.O_WRONLY|op.Flags, op.Mode, func(int) error { return nil })
	case OpWrite:
		return "", x.withFile(op.Path, unix.O_WRONLY, func(fd int) error {
			_, err := unix.Pwrite(fd, op.Data(), op.Off)
			return err
		})
	case OpAppend:
		return "", x.withFile(op.Path, unix.O_WRONLY|unix.O_APPEND, func(fd int) error {
			_, err := unix.Write(fd, op.Data())
			return err
		})
	case OpTruncate:
		return "", x.withFile(op.Path, unix.O_WRONLY, func(fd int) error { return unix.Ftruncate(fd, op.Len) })
	case OpMkdir:
		return "", x.inParent(op.Path, func(d int, n string) error { return unix.Mkdirat(d, n, op.Mode) })
	case OpMknod:
		return "", x.inParent(op.Path, func(d int, n string) error { return unix.Mknodat(d, n, op.Mode, int(op.Dev)) })
	case OpRmdir:
		return "", x.inParent(op.Path, func(d int, n string) error { return unix.Unlinkat(d, n, unix.AT_REMOVEDIR) })
	case OpUnlink:
		return "", x.inParent(op.Path, func(d int, n string) error { return unix.Unlinkat(d, n, 0) })
	case OpRename, OpLink:
		return "", x.inParent(op.Path, func(d1 int, n1 string) error {
			return x.inParent(op.Path2, func(d2 int, n2 string) error {
				if op.Kind == OpLink {
					return unix.Linkat(d1, n1, d2, n2, 0)
				}
				return unix.Renameat2(d1, n1, d2, n2, uint(op.Flags))
			})
		})
	case OpSymlink:
		return "", x.inParent(op.Path, func(d int, n string) error { return unix.Symlinkat(op.Target, d, n) })
	case OpChmod:
		// chmod follows a symlink: resolve it inside the tree, then
		// change the file through its descriptor's /proc name.
		return "", x.withFile(op.Path, unix.O_PATH, func(fd int) error {
			return unix.Fchmodat(unix.AT_FDCWD, procPath(fd, ""), op.Mode, 0)
		})
	case OpChown:
		return "", x.inParent(op.Path, func(d int, n string) error {
			return unix.Fchownat(d, n, op.UID, op.GID, unix.AT_SYMLINK_NOFOLLOW)
		})
	case OpUtimes:
		mt := unix.Timespec{Sec: op.Sec, Nsec: op.Nsec}
		at := unix.Timespec{Sec: op.Sec - 86400, Nsec: op.Nsec}
		return "", x.inParent(op.Path, func(d int, n string) error {
			return unix.UtimesNanoAt(d, n, []unix.Timespec{at, mt}, unix.AT_SYMLINK_NOFOLLOW)
		})
	case OpSetxattr:
		return "", x.inParent(op.Path, func(d int, n string) error {
			return unix.Lsetxattr(procPath(d, n), op.Name, []byte(op.Value), op.Flags)
		})
	case OpRemovexattr:
		return "", x.inParent(op.Path, func(d int, n string) error {
			return unix.Lremovexattr(procPath(d, n), op.Name)
		})
	case OpRead:
		var out string
		err := x.withFile(op.Path, unix.O_RDONLY, func(fd int) error {
			var err error
			out, err = readAll(fd)
			return err
		})
		return out, err
	case OpStat:
		var st unix.Stat_t
		err := x.inParent(op.Path, func(d int, n string) error {
			return unix.Fstatat(d, n, &st, unix.AT_SYMLINK_NOFOLLOW)
		})
		if err != nil {
			return "", err
		}
		return statSummary(&st), nil
	case OpOpen:
		if x.fds[op.Slot] >= 0 {
			unix.Close(x.fds[op.Slot])
			x.fds[op.Slot] = -1
		}
		fd, err := x.open(op.Path, op.Flags|unix.O_NONBLOCK, op.Mode)
		if err != nil {
			return "", err
		}
		x.fds[op.Slot] = fd
		return "", nil
	case OpFdRead:
		fd, err := x.slot(op.Slot)
		if err != nil {
			return "", err
		}
		return preadAll(fd)
	case OpFdWrite:
		fd, err := x.slot(op.Slot)
		if err != nil {
			return "", err
		}
		_, err = unix.Pwrite(fd, op.Data(), op.Off)
		return "", err
	case OpFdStat:
		fd, err := x.slot(op.Slot)
		if err != nil {
			return "", err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return "", err
		}
		return statSummary(&st), nil
	case OpClose:
		fd, err := x.slot(op.Slot)
		if err != nil {
			return "", err
		}
		x.fds[op.Slot] = -1
		return "", unix.Close(fd)
	case OpPopulate:
		return "", x.populate(op)
	case OpRmTree:
		n, err := x.rmTree(op.Path)
		return fmt.Sprintf("%d removed", n), err
	case OpReaddir:
		var out string
		err := x.withFile(op.Path, unix.O_RDONLY|unix.O_DIRECTORY, func(fd int) error {
			var err error
			out, err = listDir(fd)
			return err
		})
		return out, err
	}
	return "", fmt.Errorf("difftest: unknown op %v", op.Kind)
}

// statSummary is what lstat and fstat results are compared by: no inode,
// device or times, and no directory size (the backing filesystem's).
func statSummary(st *unix.Stat_t) string {
	size := st.Size
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		size = 0
	}
	return fmt.Sprintf("%s %#o %d:%d size=%d nlink=%d", typeName(st.Mode), st.Mode&0o7777, st.Uid, st.Gid, size, st.Nlink)
}

// preadAll reads the file open at fd from offset 0 to the end, leaving
// the file offset alone, and returns its size and content hash.
func preadAll(fd int) (string, error) {
	h := sha256.New()
	buf := make([]byte, 65536)
	var off int64
	for {
		n, err := unix.Pread(fd, buf, off)
		if err != nil {
			return "", err
		}
		if n == 0 {
			break
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	return fmt.Sprintf("%d bytes sha256 %x", off, h.Sum(nil)[:8]), nil
}

// populate creates op.Count small files p000... and a subdirectory "pdir"
// holding one file in the directory op.Path, as an unpacked archive
// would; it stops at the first error.
func (x *Executor) populate(op Op) error {
	dfd, err := x.open(op.Path, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	data := op.Data()
	for i := range op.Count {
		fd, err := unix.Openat(dfd, fmt.Sprintf("p%03d", i), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		_, err = unix.Write(fd, data[:i%len(data)])
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if err := unix.Mkdirat(dfd, "pdir", 0o755); err != nil {
		return err
	}
	fd, err := unix.Openat(dfd, "pdir/inside", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// rmTree removes p and everything under it as rm -rf does, without
// following symlinks, and returns how many entries it removed and the
// first error (it goes on after one). The root itself is emptied, not
// removed.
func (x *Executor) rmTree(p string) (int, error) {
	if p == "" {
		fd, err := x.open("", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return 0, err
		}
		defer unix.Close(fd)
		return rmContents(fd)
	}
	var n int
	err := x.inParent(p, func(d int, name string) error {
		var err error
		n, err = rmEntry(d, name)
		return err
	})
	return n, err
}

func rmEntry(dirfd int, name string) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return 0, err
		}
		return 1, nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	n, err := rmContents(fd)
	unix.Close(fd)
	if rerr := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); rerr != nil {
		if err == nil {
			err = rerr
		}
		return n, err
	}
	return n + 1, err
}

func rmContents(fd int) (int, error) {
	ents, err := readDirents(fd)
	if err != nil {
		return 0, err
	}
	var total int
	var first error
	for _, d := range ents {
		n, err := rmEntry(fd, d.name)
		total += n
		if err != nil && first == nil {
			first = err
		}
	}
	return total, first
}

// readAll reads the file open at fd to the end and returns its size and
// content hash.
func readAll(fd int) (string, error) {
	h := sha256.New()
	buf := make([]byte, 65536)
	var size int64
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return "", err
		}
		if n == 0 {
			break
		}
		h.Write(buf[:n])
		size += int64(n)
	}
	return fmt.Sprintf("%d bytes sha256 %x", size, h.Sum(nil)[:8]), nil
}

// listDir reads the directory open at fd to the end and returns its
// entries as sorted "name/type" items (duplicates kept, so they show).
func listDir(fd int) (string, error) {
	ents, err := readDirents(fd)
	if err != nil {
		return "", err
	}
	names := make([]string, len(ents))
	for i, d := range ents {
		names[i] = d.name + "/" + direntType(d.typ)
	}
	sort.Strings(names)
	return strings.Join(names, " "), nil
}

// dirent is one entry as getdents64 returns it.
type dirent struct {
	name string
	ino  uint64
	typ  byte
}

// readDirents reads the directory open at fd to the end, without "." and
// "..".
func readDirents(fd int) ([]dirent, error) {
	var out []dirent
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		ParseDirents(buf[:n], func(name string, ino uint64, typ byte) {
			out = append(out, dirent{name: name, ino: ino, typ: typ})
		})
	}
}

// ParseDirents calls fn for each entry but "." and ".." of buf, what one
// getdents64 call returned.
func ParseDirents(buf []byte, fn func(name string, ino uint64, typ byte)) {
	// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
	for b := buf; len(b) > 0; {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." {
			fn(s, binary.NativeEndian.Uint64(b[0:8]), b[18])
		}
		b = b[reclen:]
	}
}

func direntType(t byte) string {
	switch t {
	case unix.DT_REG:
		return "f"
	case unix.DT_DIR:
		return "d"
	case unix.DT_LNK:
		return "l"
	case unix.DT_FIFO:
		return "p"
	case unix.DT_SOCK:
		return "s"
	case unix.DT_CHR:
		return "c"
	case unix.DT_BLK:
		return "b"
	}
	return "?"
}
