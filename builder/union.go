package builder

import (
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// union is a stack of layer directories, top first, read the way an
// overlay mount shows them, by the merge walk of package layer (whiteouts
// hide, opaque directories stop the merge, a non-directory hides
// everything below it). File-only steps use it to see the container's
// tree without mounting anything.
type union []string

// dirs returns the layer directories that make up the merged directory
// rel ("" for the root), top first, each with its layer's format, or nil
// if rel is not a directory of the union.
func (u union) dirs(rel string) ([]layer.DirPath, error) {
	cur, err := layer.Roots(u)
	if err != nil {
		return nil, err
	}
	for _, name := range splitRel(rel) {
		h, err := lookupIn(cur, name)
		if err != nil || h.Kind != layer.HitDir {
			return nil, err
		}
		cur = layerPaths(cur, h, name)
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

// lookupIn looks name up in the merged directory made of dirs.
func lookupIn(dirs []layer.DirPath, name string) (layer.Hit, error) {
	stack, err := layer.OpenDirs(dirs)
	if err != nil {
		return layer.Hit{}, err
	}
	defer stack.Close()
	h, err := layer.Lookup(stack, name)
	h.Dirs.Close()
	return h, err
}

// layerPaths returns what h found for name in the merged directory made
// of dirs, top first.
func layerPaths(dirs []layer.DirPath, h layer.Hit, name string) []layer.DirPath {
	out := make([]layer.DirPath, len(h.Layers))
	for i, pos := range h.Layers {
		out[i] = dirs[pos].Child(name)
	}
	return out
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
	h, err := lookupIn(dirs, name)
	if err != nil || !h.Kind.Exists() {
		return "", st, false, err
	}
	return layerPaths(dirs, h, name)[0].Path, h.Stat, true, nil
}

// list returns the names visible in the merged directory made of dirs,
// sorted.
func list(dirs []layer.DirPath) ([]string, error) {
	stack, err := layer.OpenDirs(dirs)
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	listed, err := layer.List(stack, 0)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(listed))
	for i, e := range listed {
		out[i] = e.Name
	}
	sort.Strings(out)
	return out, nil
}
