package difftest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// Node is what Snapshot records of one entry of a tree: everything a
// program could notice, except what legitimately differs between two
// mounts of the same layers (inode and device numbers, atimes and ctimes,
// directory sizes, and mtimes that a change set to "now").
type Node struct {
	Type   string // file, dir, symlink, fifo, socket, chardev, blockdev
	Mode   uint32 // permission bits with setuid, setgid and sticky
	UID    uint32
	GID    uint32
	Nlink  uint64
	Size   int64  // files and symlinks only
	Hash   string // sha256 of a file's content, first 16 hex digits
	Target string // a symlink's content
	Rdev   uint64 // devices only
	// Mtime is the exact mtime when it is older than recentAfter (a
	// fixture time or one set by utimes), "recent" otherwise.
	Mtime  string
	Xattrs map[string]string // every xattr except security.* and system.*
	// Links are the other paths of the tree with the same inode number,
	// sorted: the hard links a program sees.
	Links string
	// Clash says that another path shows the same inode number but is
	// not the same file (other content, mode, owner or nlink).
	Clash string
	// Readdir says how readdir's d_ino and d_type of the entry differ
	// from lstat's; "" when they agree.
	Readdir string
	ino     uint64
	// Err is the error met reading this entry (its content, its link,
	// its xattrs, or a directory's listing); the walk goes on.
	Err string
}

// recentAfter separates mtimes the fixture or utimes chose (before it)
// from those a change set to the current time.
var recentAfter = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// Tree maps a path relative to the root ("" is the root) to its Node.
type Tree map[string]Node

// Snapshot walks the tree at dir without following symlinks and records
// every entry. An entry that cannot be read is recorded with its error
// and the walk goes on; only a root that cannot be opened fails it.
func Snapshot(dir string) (Tree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	t := Tree{}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	root, err := node(fd, "", &st)
	if err == nil {
		err = walk(t, fd, "")
	}
	if err != nil {
		root.Err = err.Error()
	}
	t[""] = root
	linkGroups(t)
	return t, nil
}

func walk(t Tree, dirfd int, rel string) error {
	dup, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: rel, Err: err}
	}
	ents, err := readDirents(dup)
	unix.Close(dup)
	if err != nil {
		return fmt.Errorf("readdir: %w", err)
	}
	for _, d := range ents {
		p := d.name
		if rel != "" {
			p = rel + "/" + d.name
		}
		if n, dup := t[p]; dup {
			n.Err = "listed twice by readdir"
			t[p] = n
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, d.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t[p] = Node{Err: "listed by readdir, but lstat: " + err.Error()}
			continue
		}
		n, err := node(dirfd, d.name, &st)
		if err != nil {
			n.Err = err.Error()
		}
		n.Readdir = direntMismatch(d, &st)
		if n.Type == "dir" && err == nil {
			sub, err := unix.Openat(dirfd, d.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				n.Err = "open: " + err.Error()
			} else {
				err = walk(t, sub, p)
				unix.Close(sub)
				if err != nil {
					n.Err = err.Error()
				}
			}
		}
		t[p] = n
	}
	return nil
}

// direntMismatch says how readdir's entry d disagrees with lstat: "" when
// inode number and type agree.
func direntMismatch(d dirent, st *unix.Stat_t) string {
	var m []string
	if d.ino != st.Ino {
		m = append(m, "d_ino differs from st_ino")
	}
	if want := direntType(typeToDT(st.Mode)); direntType(d.typ) != want {
		m = append(m, fmt.Sprintf("d_type %s, lstat %s", direntType(d.typ), want))
	}
	return strings.Join(m, "; ")
}

func typeToDT(mode uint32) byte {
	return byte((mode & unix.S_IFMT) >> 12) // DT_* are S_IF* >> 12
}

// linkGroups records in every non-directory of t the other paths that
// share its inode number, i.e. its hard links as the tree shows them.
func linkGroups(t Tree) {
	byIno := map[uint64][]string{}
	for p, n := range t {
		if n.Type != "dir" && n.Type != "" {
			byIno[n.ino] = append(byIno[n.ino], p)
		}
	}
	for _, group := range byIno {
		if len(group) < 2 {
			continue
		}
		sort.Strings(group)
		first := t[group[0]]
		for _, p := range group {
			n := t[p]
			n.Links = strings.Join(slices.DeleteFunc(slices.Clone(group), func(q string) bool { return q == p }), " ")
			if n.Type != first.Type || n.Mode != first.Mode || n.UID != first.UID || n.GID != first.GID ||
				n.Size != first.Size || n.Hash != first.Hash || n.Nlink != first.Nlink {
				n.Clash = "shares its inode number with a different file, " + group[0]
			}
			t[p] = n
		}
	}
}

// node records the entry name of dirfd (the directory itself for "").
func node(dirfd int, name string, st *unix.Stat_t) (Node, error) {
	n := Node{
		Type:  typeName(st.Mode),
		Mode:  st.Mode & 0o7777,
		UID:   st.Uid,
		GID:   st.Gid,
		Nlink: st.Nlink,
		Mtime: "recent",
		ino:   st.Ino,
	}
	if st.Mtim.Sec < recentAfter {
		n.Mtime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC().Format(time.RFC3339Nano)
	}
	switch n.Type {
	case "file":
		n.Size = st.Size
		h, err := hashFile(dirfd, name)
		if err != nil {
			return n, err
		}
		n.Hash = h
	case "symlink":
		n.Size = st.Size
		buf := make([]byte, unix.PathMax)
		k, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return n, fmt.Errorf("readlink: %w", err)
		}
		n.Target = string(buf[:k])
	case "chardev", "blockdev":
		n.Rdev = st.Rdev
	}
	x, err := xattrs(procPath(dirfd, name))
	if err != nil {
		return n, err
	}
	n.Xattrs = x
	return n, nil
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	}
	return fmt.Sprintf("type%o", mode&unix.S_IFMT)
}

func hashFile(dirfd int, name string) (string, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open to read: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// xattrs lists the xattrs of p (not following a symlink) with values,
// skipping security.* and system.*, which belong to the host's policy.
func xattrs(p string) (map[string]string, error) {
	names, err := layer.ListXattrs(p)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	for _, name := range names {
		if strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "system.") {
			continue
		}
		val, err := layer.GetXattr(p, name)
		if err != nil {
			return nil, fmt.Errorf("%w (listed)", err)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = string(val)
	}
	return m, nil
}

// Diff compares two trees and returns one readable line per difference,
// sorted by path; nameA and nameB label the sides. It is empty when the
// trees are the same. a is the reference: b must show at least the hard
// links a shows (see linksCovered).
func Diff(a, b Tree, nameA, nameB string) []string {
	var paths []string
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var out []string
	for _, p := range paths {
		na, okA := a[p]
		nb, okB := b[p]
		show := q(p)
		if p == "" {
			show = `"/"`
		}
		switch {
		case !okA:
			out = append(out, fmt.Sprintf("%s: only under %s (%s)", show, nameB, nb.Type))
		case !okB:
			out = append(out, fmt.Sprintf("%s: only under %s (%s)", show, nameA, na.Type))
		default:
			for _, d := range nodeDiff(na, nb) {
				out = append(out, fmt.Sprintf("%s: %s: %s %s, %s %s", show, d[0], nameA, d[1], nameB, d[2]))
			}
		}
	}
	return out
}

// nodeDiff lists the fields in which a and b differ as (field, a, b).
func nodeDiff(a, b Node) [][3]string {
	var d [][3]string
	add := func(field string, va, vb any) {
		sa, sb := fmt.Sprint(va), fmt.Sprint(vb)
		if sa != sb {
			d = append(d, [3]string{field, orDash(sa), orDash(sb)})
		}
	}
	if a.Type == "" || b.Type == "" { // lstat failed on one side
		add("type", a.Type, b.Type)
		add("error", errString(a.Err), errString(b.Err))
		return d
	}
	add("type", a.Type, b.Type)
	add("mode", fmt.Sprintf("%#o", a.Mode), fmt.Sprintf("%#o", b.Mode))
	add("owner", fmt.Sprintf("%d:%d", a.UID, a.GID), fmt.Sprintf("%d:%d", b.UID, b.GID))
	add("nlink", a.Nlink, b.Nlink)
	add("size", a.Size, b.Size)
	add("content sha256", a.Hash, b.Hash)
	add("symlink target", fmt.Sprintf("%q", a.Target), fmt.Sprintf("%q", b.Target))
	add("rdev", a.Rdev, b.Rdev)
	add("mtime", a.Mtime, b.Mtime)
	add("xattrs", xattrString(a.Xattrs), xattrString(b.Xattrs))
	if !linksCovered(a.Links, b.Links) {
		d = append(d, [3]string{"hard links", orDash(a.Links), orDash(b.Links)})
	}
	add("inode clash", orDash(a.Clash), orDash(b.Clash))
	add("readdir vs lstat", orDash(a.Readdir), orDash(b.Readdir))
	add("error", errString(a.Err), errString(b.Err))
	return d
}

// linksCovered reports whether b shows every hard link a shows. b may show
// more: without the index feature the kernel reports different inode
// numbers for some names of one file (depending on which name was looked
// up first after copy-up), and a union that knows better is not wrong;
// showing one inode number for different files is (Node.Clash).
func linksCovered(a, b string) bool {
	if a == "" {
		return true
	}
	have := strings.Fields(b)
	for _, p := range strings.Fields(a) {
		if !slices.Contains(have, p) {
			return false
		}
	}
	return true
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func errString(e string) string {
	if e == "" {
		return "none"
	}
	return e
}

func xattrString(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	var s []string
	for k, v := range m {
		if len(v) > 20 {
			v = fmt.Sprintf("%s...(%d bytes)", v[:20], len(v))
		}
		s = append(s, fmt.Sprintf("%s=%q", k, v))
	}
	sort.Strings(s)
	return "{" + strings.Join(s, " ") + "}"
}

// WithoutLinks returns a copy of t without the Links of its nodes. The
// kernel itself does not keep them across a remount: without the index
// feature, a hard link made to a copied-up file may show another inode
// number live than after remounting.
func WithoutLinks(t Tree) Tree {
	c := make(Tree, len(t))
	for p, n := range t {
		n.Links, n.Clash = "", ""
		c[p] = n
	}
	return c
}

// OverlayXattrs returns one line for every entry of t that shows an
// overlay metadata xattr of the namespace ns ("trusted" or "user"); a
// union must hide its own metadata.
func OverlayXattrs(t Tree, ns string) []string {
	var out []string
	for p, n := range t {
		for k := range n.Xattrs {
			if strings.HasPrefix(k, ns+".overlay.") {
				out = append(out, fmt.Sprintf("%q shows overlay metadata xattr %s", p, k))
			}
		}
	}
	sort.Strings(out)
	return out
}
