package builder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// Removed is one thing a clean removed (or, in a dry run, would remove).
type Removed struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// CleanOptions says what Builder.Clean removes: the build flags of
// `ovl clean`.
type CleanOptions struct {
	Old          bool // Store.CleanOld
	UnusedLayers bool // Builder.CleanUnusedLayers
	Everything   bool // Store.CleanEverything
	DryRun       bool // only list what would be removed
}

// Clean runs the cleans o asks for, in the order old roots, unused
// layers, everything, and returns all it removed (or, in a dry run, would
// remove). It stops at the first error, returning what was removed
// before it.
func (b *Builder) Clean(o CleanOptions) ([]Removed, error) {
	steps := []struct {
		on bool
		fn func(dryRun bool) ([]Removed, error)
	}{{o.Old, b.Store().CleanOld}, {o.UnusedLayers, b.CleanUnusedLayers}, {o.Everything, b.Store().CleanEverything}}
	var all []Removed
	for _, s := range steps {
		if !s.on {
			continue
		}
		removed, err := s.fn(o.DryRun)
		all = append(all, removed...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

// CleanOld removes the flattened roots under .vagga/.roots that no
// .vagga/NAME symlink points to (vagga's _clean --old), and unfinished
// layers and roots of builds that are no longer running.
func (s *Store) CleanOld(dryRun bool) ([]Removed, error) {
	live := map[string]bool{}
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if t, err := os.Readlink(filepath.Join(s.Dir, e.Name())); err == nil {
			// .roots/NAME.HASH8/root
			live[filepath.Base(filepath.Dir(t))] = true
		}
	}
	var out []Removed
	roots, _ := os.ReadDir(s.rootsDir())
	for _, e := range roots {
		if name := e.Name(); !strings.HasPrefix(name, ".") && !live[name] {
			out = append(out, Removed{Path: filepath.Join(s.rootsDir(), name)})
		}
	}
	out = append(out, s.unfinished()...)
	return s.remove(out, dryRun)
}

// CleanUnusedLayers removes the layers that no container of cfg uses in
// its current form: layers of edited steps, of removed containers, and
// squashes of those. Containers whose keys cannot be computed (a file a
// step reads is missing) make it refuse, rather than guess.
func (b *Builder) CleanUnusedLayers(dryRun bool) ([]Removed, error) {
	live := map[string]bool{hashStrings(keyVersion, "empty"): true}
	for _, name := range b.cfg.ContainerNames() {
		if err := b.liveKeys(name, live); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(b.store.layersDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Removed
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() || live[e.Name()] {
			continue
		}
		out = append(out, Removed{Path: filepath.Join(b.store.layersDir(), e.Name())})
	}
	return b.store.remove(out, dryRun)
}

// liveKeys adds to live the keys of container name's current steps, its
// one-layer form, and the squashes its stack would get on a backend
// limited to the kernel's depth.
func (b *Builder) liveKeys(name string, live map[string]bool) error {
	r, err := b.stackOf(name)
	if err != nil {
		return err
	}
	for _, k := range r.planned {
		live[k] = true
	}
	live[sharedKey(r.lastKey)] = true
	for _, sq := range squashChunks(r.keys, layer.KernelMaxLayers) {
		live[sq.key] = true
	}
	return nil
}

// stackOf returns the key and the stack keys of container name as they
// stand in the store, without building anything.
func (b *Builder) stackOf(name string) (*Result, error) {
	c := b.cfg.Containers[name]
	r := &Result{Key: baseKey, keys: []string{baseKey}, planned: []string{baseKey}}
	if p := c.Parent(); p != "" {
		pr, err := b.stackOf(p)
		if err != nil {
			return nil, err
		}
		r.keys, r.Key, r.planned = append([]string(nil), pr.keys...), pr.Key, nil
	}
	steps, err := b.plan(c, r, b.stackOf)
	if err != nil {
		return nil, err
	}
	add := func(key string) {
		r.planned = append(r.planned, key)
		if b.store.Has(key) {
			if empty, _ := b.emptyOver(key, r.keys); !empty {
				r.keys = append(r.keys, key)
			}
		}
	}
	for _, s := range steps {
		r.Key = s.key
		add(s.key)
	}
	r.lastKey = r.Key
	r.Key = finishKey(r.Key, finishOf(b.cfg, c))
	add(r.Key)
	return r, nil
}

// CleanEverything removes the whole .vagga directory: layers, roots,
// symlinks, locks (vagga's _clean --everything).
func (s *Store) CleanEverything(dryRun bool) ([]Removed, error) {
	if _, err := os.Lstat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return s.remove([]Removed{{Path: s.Dir}}, dryRun)
}

// remove measures and (unless dryRun) removes each path.
func (s *Store) remove(list []Removed, dryRun bool) ([]Removed, error) {
	for i := range list {
		list[i].Bytes = treeUsage(list[i].Path)
		if !dryRun {
			if err := removeTree(list[i].Path); err != nil {
				return list[:i], err
			}
		}
	}
	return list, nil
}

// diskUsage is the space the files under p take, counting each hard
// linked file once.
func diskUsage(p string) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(q, &st) != nil {
			return nil
		}
		id := [2]uint64{uint64(st.Dev), st.Ino}
		if !seen[id] {
			seen[id] = true
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}
