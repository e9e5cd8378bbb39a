package builder

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// union is a stack of layer directories, top first, read the way an
// overlay mount shows them: whiteouts hide, opaque directories stop the
// merge, a non-directory hides everything below it. File-only steps use
// it to see the container's tree without mounting anything.
type union []string

// dirs returns the layer directories that make up the merged directory
// rel ("" for the root), top first, or nil if rel is not a directory of
// the union.
func (u union) dirs(rel string) ([]string, error) {
	cur := append([]string(nil), u...)
	for _, name := range splitRel(rel) {
		next, err := childDirs(cur, name)
		if err != nil || next == nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// splitRel splits a clean relative path into its components.
func splitRel(rel string) []string {
	rel = strings.Trim(rel, "/")
	if rel == "" || rel == "." {
		return nil
	}
	return strings.Split(rel, "/")
}

// hit is what one layer holds for a name.
type hit int

const (
	hitNone     hit = iota // not in this layer: look below
	hitWhiteout            // deleted here: nothing below counts
	hitEntry               // an entry
)

// probe classifies name in the layer directory dir, and reports whether
// dir is opaque (hides the layers below it).
func probe(dir, name string) (h hit, st unix.Stat_t, opaque bool, err error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return hitNone, st, false, nil
		}
		return hitNone, st, false, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	op, err := layer.DirOpacity(fd)
	if err != nil {
		return hitNone, st, false, &os.PathError{Op: "read opacity", Path: dir, Err: err}
	}
	opaque = op == layer.OpaqueDir
	switch err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		if kind, _ := layer.Classify(fd, name, &st, op); kind == layer.Whiteout {
			return hitWhiteout, st, opaque, nil
		}
		return hitEntry, st, opaque, nil
	case !errors.Is(err, unix.ENOENT):
		return hitNone, st, opaque, &os.PathError{Op: "lstat", Path: filepath.Join(dir, name), Err: err}
	}
	// An OCI whiteout file hides name without an entry of that name.
	aufs := layer.WhiteoutPrefix + name
	var wst unix.Stat_t
	if unix.Fstatat(fd, aufs, &wst, unix.AT_SYMLINK_NOFOLLOW) == nil {
		if kind, target := layer.Classify(fd, aufs, &wst, op); kind == layer.Whiteout && target == name {
			return hitWhiteout, st, opaque, nil
		}
	}
	return hitNone, st, opaque, nil
}

// childDirs returns, for the merged directory made of dirs, the layer
// directories that make up its child name, or nil if that child is not
// a directory of the union.
func childDirs(dirs []string, name string) ([]string, error) {
	var next []string
	for _, d := range dirs {
		h, st, opaque, err := probe(d, name)
		if err != nil {
			return nil, err
		}
		switch h {
		case hitWhiteout:
			return next, nil
		case hitEntry:
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return next, nil
			}
			next = append(next, filepath.Join(d, name))
		}
		if opaque {
			break
		}
	}
	return next, nil
}

// lookup finds rel in the union: the path of the topmost visible entry
// and its lstat, or found == false.
func (u union) lookup(rel string) (path string, st unix.Stat_t, found bool, err error) {
	parts := splitRel(rel)
	if len(parts) == 0 {
		err = unix.Lstat(u[0], &st)
		return u[0], st, err == nil, err
	}
	dirs, err := u.dirs(strings.Join(parts[:len(parts)-1], "/"))
	if err != nil || dirs == nil {
		return "", st, false, err
	}
	name := parts[len(parts)-1]
	for _, d := range dirs {
		h, est, opaque, err := probe(d, name)
		if err != nil {
			return "", st, false, err
		}
		switch h {
		case hitWhiteout:
			return "", st, false, nil
		case hitEntry:
			return filepath.Join(d, name), est, true, nil
		}
		if opaque {
			break
		}
	}
	return "", st, false, nil
}

// list returns the names visible in the merged directory made of dirs,
// sorted.
func list(dirs []string) ([]string, error) {
	seen := map[string]bool{} // decided: shown or hidden
	shown := map[string]bool{}
	for _, d := range dirs {
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: d, Err: err}
		}
		entries, op, err := layer.ReadDir(fd)
		unix.Close(fd)
		if err != nil {
			return nil, &os.PathError{Op: "readdir", Path: d, Err: err}
		}
		for _, e := range entries {
			if e.Kind != layer.Visible && e.Kind != layer.Whiteout || seen[e.Target] {
				continue
			}
			seen[e.Target] = true
			shown[e.Target] = e.Kind == layer.Visible
		}
		if op == layer.OpaqueDir {
			break
		}
	}
	var out []string
	for n, ok := range shown {
		if ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
