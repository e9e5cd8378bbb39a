package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Diff writes into the directory upper the layer that turns the union of
// lowers (top first) into the plain directory tree: what tree lacks
// becomes a whiteout (MakeWhiteout), what it adds or changes is copied,
// a directory that replaces a non-directory is copied whole. Opaque
// markers go in namespace ns, the one the stack is mounted with
// (layer.Spec.Namespace). A copy backend calls it when a run ends, so
// that builds get layers on every backend. upper is created if missing
// and should be empty; on error it may be partly written.
func Diff(ns Namespace, lowers []string, tree, upper string) error {
	for i, l := range lowers {
		if err := isDir(l); err != nil {
			return &SpecError{Field: fmt.Sprintf("lower[%d]", i), Path: l, Err: err, Hint: "create it first, or fix the path"}
		}
	}
	if err := isDir(tree); err != nil {
		return &SpecError{Field: "tree", Path: tree, Err: err}
	}
	if err := os.MkdirAll(upper, 0o755); err != nil {
		return fmt.Errorf("diff into %s: %w", upper, err)
	}
	d := &differ{ns: ns, tree: tree, upper: upper, cp: newCopier(context.Background())}
	var st unix.Stat_t
	if err := unix.Lstat(tree, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: tree, Err: err}
	}
	roots, err := Roots(lowers)
	if err != nil {
		return err
	}
	if err := d.dir(".", roots, &st); err != nil {
		return fmt.Errorf("diff %s against its layers into %s: %w", tree, upper, err)
	}
	// The upper's root carries the tree root's metadata, as the kernel's
	// merged root shows the upper root's.
	return copyMeta(tree, upper, &st)
}

// mergedNode is one name in the union of the lowers.
type mergedNode struct {
	path   string      // the top-most layer's file
	st     unix.Stat_t // its lstat
	layers []DirPath   // for a directory: its layers that merge, top first
}

// differ walks tree and the union of the lowers side by side.
type differ struct {
	ns    Namespace
	tree  string
	upper string
	cp    *copier
}

// mergedChildren lists the union of the directory whose layers are dirs
// (top first, each a directory), by the merge walk: name -> node.
func mergedChildren(dirs []DirPath) (map[string]*mergedNode, error) {
	stack, err := OpenDirs(dirs)
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	listed, err := List(stack, 0)
	if err != nil {
		return nil, fmt.Errorf("read layer directory %s: %w", dirs[0].Path, err)
	}
	out := make(map[string]*mergedNode, len(listed))
	for _, e := range listed {
		n := &mergedNode{path: filepath.Join(dirs[e.Layer].Path, e.Name)}
		if err := unix.Lstat(n.path, &n.st); err != nil {
			return nil, &os.PathError{Op: "lstat", Path: n.path, Err: err}
		}
		if isDirMode(n.st.Mode) {
			h, err := Lookup(stack, e.Name)
			if err != nil {
				return nil, fmt.Errorf("look up %s: %w", n.path, err)
			}
			h.Dirs.Close()
			for _, pos := range h.Layers {
				n.layers = append(n.layers, dirs[pos].Child(e.Name))
			}
		}
		out[e.Name] = n
	}
	return out, nil
}

func isDirMode(m uint32) bool { return m&unix.S_IFMT == unix.S_IFDIR }

// dir diffs directory rel of tree (lstat st) against the merged directory
// made of layers, writing the differences under upper/rel.
func (d *differ) dir(rel string, layers []DirPath, st *unix.Stat_t) error {
	merged, err := mergedChildren(layers)
	if err != nil {
		return err
	}
	tdir := filepath.Join(d.tree, rel)
	names, err := readNames(tdir)
	if err != nil {
		return err
	}
	inTree := make(map[string]bool, len(names))
	for _, name := range names {
		inTree[name] = true
		r := filepath.Join(rel, name)
		tp := filepath.Join(d.tree, r)
		var ts unix.Stat_t
		if err := unix.Lstat(tp, &ts); err != nil {
			return &os.PathError{Op: "lstat", Path: tp, Err: err}
		}
		m := merged[name]
		switch {
		case isDirMode(ts.Mode) && m != nil && isDirMode(m.st.Mode):
			if err := d.dir(r, m.layers, &ts); err != nil {
				return err
			}
			same, err := sameMeta(m.path, tp, &m.st, &ts)
			if err != nil {
				return err
			}
			if !same {
				if err := d.ensureDir(r); err != nil {
					return err
				}
			}
		case m != nil && !isDirMode(ts.Mode) && !isDirMode(m.st.Mode):
			same, err := sameFile(m.path, tp, &m.st, &ts)
			if err != nil {
				return err
			}
			if same {
				continue
			}
			if err := d.ensureDir(rel); err != nil {
				return err
			}
			if err := d.cp.copyTree(tp, filepath.Join(d.upper, r)); err != nil {
				return err
			}
		default:
			// New, or replaced by another type: copy it whole; a directory
			// replacing a directory's contents is opaque.
			if err := d.ensureDir(rel); err != nil {
				return err
			}
			up := filepath.Join(d.upper, r)
			if err := d.cp.copyTree(tp, up); err != nil {
				return err
			}
			if isDirMode(ts.Mode) && m != nil {
				if err := d.makeOpaque(up); err != nil {
					return err
				}
			}
		}
	}
	for name := range merged {
		if inTree[name] {
			continue
		}
		if err := d.ensureDir(rel); err != nil {
			return err
		}
		if err := d.whiteout(filepath.Join(d.upper, rel), name); err != nil {
			return err
		}
	}
	// Writing children changed the upper directory's times: give it the
	// tree's again.
	up := filepath.Join(d.upper, rel)
	if rel != "." {
		if _, err := os.Lstat(up); err == nil {
			return copyMeta(tdir, up, st)
		}
	}
	return nil
}

// ensureDir makes upper/rel and its parents exist, with the tree's
// metadata.
func (d *differ) ensureDir(rel string) error {
	if rel == "." {
		return nil
	}
	up := filepath.Join(d.upper, rel)
	if _, err := os.Lstat(up); err == nil {
		return nil
	}
	if err := d.ensureDir(filepath.Dir(rel)); err != nil {
		return err
	}
	tp := filepath.Join(d.tree, rel)
	var st unix.Stat_t
	if err := unix.Lstat(tp, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: tp, Err: err}
	}
	if err := os.Mkdir(up, 0o700); err != nil {
		return err
	}
	return copyMeta(tp, up, &st)
}

func (d *differ) whiteout(dir, name string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return MakeWhiteout(fd, name, d.ns)
}

func (d *differ) makeOpaque(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return MakeOpaque(fd, d.ns)
}

// sameMeta reports whether a and b (lstats sa, sb) have the same mode,
// owner, modification time and xattrs.
func sameMeta(a, b string, sa, sb *unix.Stat_t) (bool, error) {
	if sa.Mode != sb.Mode || sa.Uid != sb.Uid || sa.Gid != sb.Gid || sa.Mtim != sb.Mtim {
		return false, nil
	}
	return sameXattrs(a, b)
}

// sameFile reports whether the non-directories a and b are the same to a
// user: metadata, size, symlink target or device number. Content is taken
// as unchanged when size and modification time are.
func sameFile(a, b string, sa, sb *unix.Stat_t) (bool, error) {
	if same, err := sameMeta(a, b, sa, sb); err != nil || !same {
		return false, err
	}
	if sa.Size != sb.Size || sa.Rdev != sb.Rdev {
		return false, nil
	}
	if sa.Mode&unix.S_IFMT == unix.S_IFLNK {
		ta, err := os.Readlink(a)
		if err != nil {
			return false, err
		}
		tb, err := os.Readlink(b)
		if err != nil {
			return false, err
		}
		return ta == tb, nil
	}
	return true, nil
}

func sameXattrs(a, b string) (bool, error) {
	na, err := ListXattrs(a)
	if err != nil {
		return false, err
	}
	nb, err := ListXattrs(b)
	if err != nil {
		return false, err
	}
	count := 0
	for _, n := range nb {
		if !IsOverlayXattr(n) {
			count++
		}
	}
	for _, n := range na {
		if IsOverlayXattr(n) {
			continue
		}
		count--
		va, err := GetXattr(a, n)
		if err != nil {
			return false, err
		}
		vb, err := GetXattr(b, n)
		if errors.Is(err, unix.ENODATA) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !bytes.Equal(va, vb) {
			return false, nil
		}
	}
	return count == 0, nil
}
