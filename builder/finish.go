package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/vagga"
)

// The build root vagga gives every container, and what it does when a
// container's steps are done (its builder's start and finish), as two
// layers of their own: the base under a container's first step (unless
// it is built on another container, whose layers come first), the finish
// over its last.

// baseKey is the key of the base layer every container without a parent
// starts from; it is the parent key of the first step.
var baseKey = hashStrings(keyVersion, "base")

// baseDirs are the directories of the base layer: the mount points of a
// build (/dev, /proc, /sys, /run, /work), /tmp, and /etc, so that a
// first step may write /etc/x as in vagga. /etc holds empty resolv.conf
// and hosts, as vagga's builder copies the host's there (a command step
// shows the host's; see runner.Config.HostFiles).
var baseDirs = []struct {
	path string
	mode os.FileMode
}{{"dev", 0o755}, {"etc", 0o755}, {"proc", 0o755}, {"run", 0o755}, {"sys", 0o755}, {"tmp", 0o777 | os.ModeSticky}, {"work", 0o755}}

var baseFiles = []string{"etc/hosts", "etc/resolv.conf"}

// applyBase writes the base layer.
func applyBase(w *writer) error {
	for _, d := range baseDirs {
		if err := w.dir(d.path, d.mode, 0, 0); err != nil {
			return err
		}
	}
	for _, f := range baseFiles {
		if err := w.writeFile(f, strings.NewReader(""), 0o644, 0, 0, false); err != nil {
			return err
		}
	}
	return nil
}

// reproducibleTimes gives everything in the layer dir the time vagga's
// copies get (copyTimestamp): the base and finish layers are made the
// same wherever they are made, so a container whose steps come from a
// build cache is the same as one built here, to the nanosecond.
func reproducibleTimes(dir string) error {
	ts := []unix.Timespec{{Sec: copyTimestamp}, {Sec: copyTimestamp}}
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	for i := len(paths) - 1; i >= 0; i-- { // a directory after what is in it
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "set times", Path: paths[i], Err: err}
		}
	}
	return nil
}

// finishSpec is what vagga does at the end of a container's build, in
// this order: empty /etc/resolv.conf and /etc/hosts (and the container's
// resolv-conf-path and hosts-file-path), remove the paths of every
// !Remove, empty the directories of every !EmptyDir (and /tmp,
// /var/tmp), make the directories of every !EnsureDir (and the mount
// points /dev, /proc, /run, /sys, /tmp, /work), then keep only the
// data-dirs if the container has them. The steps of the containers it
// is built on count too: a parent's !Remove applies to its children.
type finishSpec struct {
	Truncate []string `json:"truncate"`
	Remove   []string `json:"remove"`
	Empty    []string `json:"empty"`
	Ensure   []string `json:"ensure"`
	DataDirs []string `json:"data-dirs,omitempty"`
}

// finishOf computes the finish of container c.
func finishOf(cfg *vagga.Config, c *vagga.Container) finishSpec {
	truncate := map[string]bool{vagga.DefaultResolvConfPath: true, vagga.DefaultHostsFilePath: true}
	for _, p := range []string{c.ResolvConfPath, c.HostsFilePath} {
		if p != "" {
			truncate[p] = true
		}
	}
	remove := map[string]bool{}
	empty := map[string]bool{"/tmp": true, "/var/tmp": true}
	ensure := map[string]bool{"/dev": true, "/proc": true, "/run": true, "/sys": true, "/tmp": true, "/work": true}
	seen := map[string]bool{}
	var visit func(c *vagga.Container)
	visit = func(c *vagga.Container) {
		if seen[c.Name] {
			return
		}
		seen[c.Name] = true
		if p, ok := cfg.Containers[c.Parent()]; ok {
			visit(p)
		}
		for _, s := range c.Setup {
			switch s := s.(type) {
			case *vagga.RemoveStep:
				remove[s.Path] = true
			case *vagga.EmptyDirStep:
				empty[s.Path] = true
			case *vagga.EnsureDirStep:
				ensure[s.Path] = true
			}
		}
	}
	visit(c)
	return finishSpec{Truncate: sortedSet(truncate), Remove: sortedSet(remove), Empty: sortedSet(empty),
		Ensure: sortedSet(ensure), DataDirs: append([]string(nil), c.DataDirs...)}
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// finishKey is the key of the finish layer over the container's last
// step: the container's key.
func finishKey(lastKey string, f finishSpec) string {
	return hashStrings(keyVersion, "finish", lastKey, fmt.Sprintf("%q", [][]string{f.Truncate, f.Remove, f.Empty, f.Ensure, f.DataDirs}))
}

// applyFinish writes the finish layer. What is already as it should be
// is left alone, so a finish with nothing to do is an empty layer.
func applyFinish(w *writer, f finishSpec) error {
	u := w.full()
	for _, p := range f.Truncate {
		r := rel(p)
		_, st, found, err := u.lookup(r)
		if err != nil {
			return err
		}
		switch {
		case found && st.Mode&unix.S_IFMT != unix.S_IFREG, found && st.Size == 0:
			continue // a symlink (resolv.conf -> /run/...) is left as it is
		case found:
			uid, gid := w.owners.fromLocal(int(st.Uid), int(st.Gid))
			if err := w.writeFile(r, strings.NewReader(""), os.FileMode(st.Mode).Perm()|modeBits(st.Mode), uid, gid, false); err != nil {
				return err
			}
		default:
			if dirs, err := u.dirs(parentRel(r)); err != nil || dirs == nil {
				return fmt.Errorf("%w: Cannot create file %s: no such directory %s", ErrPath, p, path.Dir(p))
			}
			if err := w.writeFile(r, strings.NewReader(""), 0o644, 0, 0, false); err != nil {
				return err
			}
		}
	}
	for _, p := range f.Remove {
		if err := w.remove(rel(p)); err != nil {
			return fmt.Errorf("!Remove %s at the end of the build: %w", p, err)
		}
	}
	for _, p := range f.Empty {
		_, st, found, err := w.full().lookup(rel(p))
		if err != nil || !found || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue // vagga empties only directories that are there
		}
		if names, err := w.listDir(rel(p)); err != nil || len(names) == 0 {
			continue
		}
		if err := w.emptyDir(rel(p)); err != nil {
			return fmt.Errorf("!EmptyDir %s at the end of the build: %w", p, err)
		}
	}
	for _, p := range f.Ensure {
		_, st, found, err := w.full().lookup(rel(p))
		switch {
		case err != nil:
			return err
		case found && st.Mode&unix.S_IFMT == unix.S_IFDIR, found && st.Mode&unix.S_IFMT == unix.S_IFLNK:
			continue
		case found:
			return fmt.Errorf("%w: Path %q exists but not a directory (!EnsureDir at the end of the build)", ErrPath, p)
		}
		if err := w.ensureDir(rel(p), true, false); err != nil {
			return err
		}
	}
	if len(f.DataDirs) > 0 {
		keep := map[string]bool{} // true: keep all of it; false: look inside
		for _, d := range f.DataDirs {
			r := rel(d)
			for p := parentRel(r); p != ""; p = parentRel(p) {
				if _, ok := keep[p]; !ok {
					keep[p] = false
				}
			}
			keep[r] = true
		}
		if err := w.keepOnly("", keep); err != nil {
			return fmt.Errorf("data-dirs: %w", err)
		}
	}
	return nil
}

// listDir lists the merged directory rel.
func (w *writer) listDir(rel string) ([]string, error) {
	dirs, err := w.full().dirs(rel)
	if err != nil || dirs == nil {
		return nil, err
	}
	return list(dirs)
}

// keepOnly removes what is in the directory rel but the paths keep
// names (true: kept whole; false: a parent of one, looked into).
func (w *writer) keepOnly(dir string, keep map[string]bool) error {
	names, err := w.listDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		r := joinRel(dir, n)
		whole, ok := keep[r]
		switch {
		case !ok:
			if err := w.remove(r); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		case !whole:
			if err := w.keepOnly(r, keep); err != nil {
				return err
			}
		}
	}
	return nil
}
