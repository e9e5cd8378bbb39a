package builder

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// parentRoot returns the plain root of r's parent container and the
// keys of r's own layers (bottom first), when r has a parent whose root
// exists: the parent is built (and its root written, under the name its
// key gives it) before the child. ok is false when there is none.
func (b *Builder) parentRoot(r *Result) (root string, own []string, ok bool) {
	p := r.parent
	if p == nil || len(r.keys) < len(p.keys) || !slices.Equal(r.keys[:len(p.keys)], p.keys) {
		return "", nil, false
	}
	root = filepath.Join(b.store.rootsDir(), rootName(p.Container, p.Key), "root")
	if !dirExists(root) {
		return "", nil, false
	}
	return root, r.keys[len(p.keys):], true
}

// cloneRoot makes dst, the plain root of r, from its parent's root
// instead of flattening the whole stack: the parent's root is cloned
// with its regular files hard-linked (layer.CloneTree), then only r's
// own layers are flattened on top, which replaces the files they change
// and never writes into a linked one. So a child's root costs a walk of
// the parent's directories, not a copy of its data, and shares the
// parent's unchanged files on disk, as vagga's `_hardlink` does across
// containers. Roots are read-only products (runs mount them read-only or
// under an overlay; the copy backend copies them), so sharing is safe.
//
// It returns what it did (without dst, a temporary name), or ok false when dst must be flattened the
// usual way: no parent, its root missing, or the clone failed (another
// filesystem, a file that can be neither linked nor read); dst is then
// removed again, and err says if that failed.
func (b *Builder) cloneRoot(ctx context.Context, r *Result, dst string) (detail string, ok bool, err error) {
	src, own, ok := b.parentRoot(r)
	if !ok {
		return "", false, nil
	}
	stats, err := cloneTree(ctx, src, dst)
	if err == nil && len(own) > 0 {
		err = b.flatten(ctx, "flatten "+r.Container, b.layerDirs(own), dst)
	}
	if err != nil {
		slog.Debug("build: cannot make the root from the parent's, flattening all layers",
			"container", r.Container, "parent_root", src, "err", err)
		if _, statErr := os.Lstat(dst); statErr == nil {
			return "", false, removeTree(dst)
		}
		return "", false, nil
	}
	layers := "1 layer"
	if len(own) != 1 {
		layers = fmt.Sprintf("%d layers", len(own))
	}
	return fmt.Sprintf("cloned %s's root (%d files linked, %d copied), applied %s",
		r.parent.Container, stats.Linked, stats.Copied, layers), true, nil
}
