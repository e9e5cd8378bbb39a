package builder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ovl-dev/ovl/vagga"
)

// CleanTmp removes the unfinished layers and roots of builds that are no
// longer running (vagga's _clean --tmp).
func (s *Store) CleanTmp(dryRun bool) ([]Removed, error) {
	return s.remove(s.unfinished(), dryRun)
}

// unfinished lists the temporary layers and roots of builds no longer
// running.
func (s *Store) unfinished() []Removed {
	var out []Removed
	roots, _ := os.ReadDir(s.rootsDir())
	for _, e := range roots {
		if strings.HasPrefix(e.Name(), ".") && !buildRunning(e.Name()) {
			out = append(out, Removed{Path: filepath.Join(s.rootsDir(), e.Name())})
		}
	}
	tmps, _ := os.ReadDir(s.tmpDir())
	for _, e := range tmps {
		if !buildRunning(e.Name()) {
			out = append(out, Removed{Path: filepath.Join(s.tmpDir(), e.Name())})
		}
	}
	return out
}

// CleanUnused removes what no container of the config uses in its
// current form (vagga's _clean --unused): the roots of other versions
// of its containers and of containers it no longer has, and the layers
// CleanUnusedLayers removes.
func (b *Builder) CleanUnused(dryRun bool) ([]Removed, error) {
	current := map[string]bool{}
	for _, name := range b.cfg.ContainerNames() {
		r, err := b.stackOf(name)
		if err != nil {
			return nil, err
		}
		current[rootName(name, r.Key)] = true
	}
	var out []Removed
	roots, _ := os.ReadDir(b.store.rootsDir())
	for _, e := range roots {
		if !strings.HasPrefix(e.Name(), ".") && !current[e.Name()] {
			out = append(out, Removed{Path: filepath.Join(b.store.rootsDir(), e.Name())})
		}
	}
	removed, err := b.store.remove(out, dryRun)
	if err != nil {
		return removed, err
	}
	layers, err := b.CleanUnusedLayers(dryRun)
	return append(removed, layers...), err
}

// CleanVolumes removes persistent volumes (.vagga/.volumes): all of
// them (vagga's _clean --volumes: they are made again at the next run),
// or with unusedOnly those no container or command of the config names
// (--unused-volumes).
func (b *Builder) CleanVolumes(unusedOnly, dryRun bool) ([]Removed, error) {
	used := map[string]bool{}
	mark := func(vols []vagga.Volume) {
		for _, v := range vols {
			if v.Kind == vagga.VolumePersistent {
				used[v.Name] = true
			}
		}
	}
	for _, c := range b.cfg.Containers {
		mark(c.Volumes)
	}
	var markCmd func(c *vagga.Command)
	markCmd = func(c *vagga.Command) {
		mark(c.Volumes)
		for _, ch := range c.Children {
			markCmd(ch)
		}
	}
	for _, c := range b.cfg.Commands {
		markCmd(c)
	}
	entries, err := os.ReadDir(b.volumesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Removed
	for _, e := range entries {
		name := strings.TrimPrefix(e.Name(), ".tmp.")
		if unusedOnly && used[name] && !strings.HasPrefix(e.Name(), ".tmp.") {
			continue
		}
		out = append(out, Removed{Path: filepath.Join(b.volumesDir(), e.Name())})
	}
	return b.store.remove(out, dryRun)
}
