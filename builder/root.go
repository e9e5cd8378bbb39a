package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// rootName is the directory name of a container's flattened root under
// .vagga/.roots: NAME.HASH8, as vagga names its roots.
func rootName(container, key string) string { return container + "." + key[:8] }

// Root is where the flattened root of container's build with key is:
// .vagga/.roots/NAME.HASH8/root.
func (s *Store) Root(container, key string) string {
	return filepath.Join(s.rootsDir(), rootName(container, key), "root")
}

// writeRoot makes sure the plain root of r exists, flattened from its
// layers (or, for a child container, cloned from its parent's root with
// only its own layers flattened on top: cloneRoot), and points
// .vagga/NAME at it. Both happen atomically: the root
// is written under a temporary name and renamed, the symlink is replaced
// by rename, so a reader sees the old container or the new, never half.
func (b *Builder) writeRoot(ctx context.Context, r *Result) (string, error) {
	roots := b.store.rootsDir()
	final := filepath.Join(roots, rootName(r.Container, r.Key))
	root := filepath.Join(final, "root")
	if err := privateDir(roots); err != nil {
		return "", err
	}
	if r.force && r.Ran > 0 && dirExists(root) {
		// The steps ran again (--force): the root is made again from them.
		if err := removeTree(final); err != nil {
			return "", fmt.Errorf("remove the old root of %s: %w", r.Container, err)
		}
	}
	if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
		start := time.Now()
		tmp, err := os.MkdirTemp(roots, "."+tmpPrefix()+rootName(r.Container, r.Key)+".")
		if err != nil {
			return "", err
		}
		detail, cloned := "", false
		if len(r.Layers) == 0 {
			err = os.Mkdir(filepath.Join(tmp, "root"), 0o755)
		} else if detail, cloned, err = b.cloneRoot(ctx, r, filepath.Join(tmp, "root")); err == nil && !cloned {
			err = b.flatten(ctx, "flatten "+r.Container, r.Layers, filepath.Join(tmp, "root"))
		}
		if cloned {
			detail += " into " + root
		} else {
			detail = "flattened into " + root
		}
		if err == nil {
			err = os.Chmod(tmp, privateMode)
		}
		if err == nil {
			err = os.Rename(tmp, final)
			if err != nil && dirExists(root) {
				err = nil // another build of the same key won
			}
		}
		if err != nil {
			removeTree(tmp)
			return "", fmt.Errorf("write the root of %s: %w", r.Container, err)
		}
		b.event(Event{Container: r.Container, Status: StatusRoot, Key: r.Key, Seconds: time.Since(start).Seconds(),
			Detail: detail})
	} else if err != nil {
		return "", err
	}
	link := filepath.Join(b.store.Dir, r.Container)
	target := filepath.Join(".roots", rootName(r.Container, r.Key), "root")
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return root, nil
	}
	tmpLink := link + ".tmp." + strconv.Itoa(os.Getpid())
	os.Remove(tmpLink)
	if err := os.Symlink(target, tmpLink); err != nil {
		return "", err
	}
	if err := os.Rename(tmpLink, link); err != nil {
		os.Remove(tmpLink)
		return "", fmt.Errorf("point %s at the new root: %w", link, err)
	}
	return root, nil
}

// removeOtherRoots removes the roots of container but the one of key
// (vagga's auto-clean: the old versions go once a new one is built).
func (s *Store) removeOtherRoots(container, key string) error {
	entries, err := os.ReadDir(s.rootsDir())
	if err != nil {
		return err
	}
	keep := rootName(container, key)
	for _, e := range entries {
		n := e.Name()
		if n == keep || !strings.HasPrefix(n, container+".") || strings.Contains(strings.TrimPrefix(n, container+"."), ".") {
			continue
		}
		if err := removeTree(filepath.Join(s.rootsDir(), n)); err != nil {
			return err
		}
	}
	return nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
