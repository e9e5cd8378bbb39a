package difftest

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// Stack is one layer stack built by BuildStack: three lowers, an empty
// upper, a work directory and a mount target, all under Dir.
type Stack struct {
	Dir       string
	Lowers    []string // top first, as in layer.Spec
	Upper     string
	Work      string
	Target    string
	Namespace layer.Namespace
}

// Spec returns the layer.Spec that mounts s on s.Target.
func (s *Stack) Spec() layer.Spec {
	return layer.Spec{Lowers: s.Lowers, Upper: s.Upper, Work: s.Work, Target: s.Target, Namespace: s.Namespace}
}

// CrossSpec returns a spec for mounting s's layers again on a fresh target
// and work directory (named by suffix), for the second half of a run.
func (s *Stack) CrossSpec(suffix string) (layer.Spec, error) {
	sp := s.Spec()
	sp.Work = filepath.Join(s.Dir, "work-"+suffix)
	sp.Target = filepath.Join(s.Dir, "mnt-"+suffix)
	for _, d := range []string{sp.Work, sp.Target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return sp, fmt.Errorf("cross mount of %s: %w", s.Dir, err)
		}
	}
	return sp, nil
}

type entryKind int

const (
	kFile entryKind = iota
	kDir
	kSymlink
	kHardlink // a second name for the file at arg
	kFifo
	kWhiteout
	kOpaqueDir
)

// fixtureEntry is one entry of a fixture layer. Owner is applied (as both
// uid and gid) only where the builder may chown: root in the initial user
// namespace.
type fixtureEntry struct {
	layer  int // 0 is the bottom layer
	path   string
	kind   entryKind
	arg    string // symlink target, hard link source
	size   int    // file content size
	mode   uint32 // permission bits, incl. setuid/setgid/sticky
	owner  int
	xattrs [][2]string
}

// fixture is the content of every stack: the same every time, so two
// stacks built from it are identical.
var fixture = []fixtureEntry{
	// Layer 0, the bottom.
	{layer: 0, path: "a.txt", kind: kFile, size: 100, mode: 0o644},
	{layer: 0, path: "b.bin", kind: kFile, size: 70000, mode: 0o644, owner: 1000},
	{layer: 0, path: "empty", kind: kFile, size: 0, mode: 0o600},
	{layer: 0, path: "exec.sh", kind: kFile, size: 300, mode: 0o755},
	{layer: 0, path: "suid", kind: kFile, size: 50, mode: 0o4755},
	{layer: 0, path: "ro", kind: kFile, size: 20, mode: 0o444, owner: 1000},
	{layer: 0, path: "secret", kind: kFile, size: 30, mode: 0o000},
	{layer: 0, path: "xa", kind: kFile, size: 40, mode: 0o644, xattrs: [][2]string{{"user.a", "1"}, {"user.b", "two"}}},
	{layer: 0, path: "a-del.txt", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "d1", kind: kDir, mode: 0o755},
	{layer: 0, path: "d1/f1", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "d1/d2", kind: kDir, mode: 0o750, owner: 1000},
	{layer: 0, path: "d1/d2/f2", kind: kFile, size: 20, mode: 0o640, owner: 1000},
	{layer: 0, path: "d1/d2/d3", kind: kDir, mode: 0o700},
	{layer: 0, path: "d1/d2/d3/deep.txt", kind: kFile, size: 5000, mode: 0o644},
	{layer: 0, path: "d1/link-back", kind: kSymlink, arg: "../keep/k1"},
	{layer: 0, path: "gone", kind: kDir, mode: 0o755},
	{layer: 0, path: "gone/g1", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "gone/sub", kind: kDir, mode: 0o755},
	{layer: 0, path: "gone/sub/g2", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "opq", kind: kDir, mode: 0o755},
	{layer: 0, path: "opq/x", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "opq/inner", kind: kDir, mode: 0o755},
	{layer: 0, path: "opq/inner/z", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "keep", kind: kDir, mode: 0o755},
	{layer: 0, path: "keep/k1", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "keep/k2", kind: kFile, size: 20, mode: 0o644},
	{layer: 0, path: "sticky", kind: kDir, mode: 0o1777},
	{layer: 0, path: "sticky/s", kind: kFile, size: 10, mode: 0o644, owner: 1000},
	{layer: 0, path: "sgid", kind: kDir, mode: 0o2775, owner: 1000},
	{layer: 0, path: "swap", kind: kDir, mode: 0o755},
	{layer: 0, path: "swap/inside", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "filedir", kind: kFile, size: 10, mode: 0o644},
	{layer: 0, path: "link-rel", kind: kSymlink, arg: "a.txt"},
	{layer: 0, path: "link-dir", kind: kSymlink, arg: "d1/d2"},
	{layer: 0, path: "link-dangling", kind: kSymlink, arg: "nowhere"},
	{layer: 0, path: "link-abs", kind: kSymlink, arg: "/etc/passwd"},
	{layer: 0, path: "link-up", kind: kSymlink, arg: "../../../.."},
	{layer: 0, path: "hl1", kind: kFile, size: 200, mode: 0o644},
	{layer: 0, path: "hl2", kind: kHardlink, arg: "hl1"},
	{layer: 0, path: "d1/hl3", kind: kHardlink, arg: "hl1"},
	{layer: 0, path: "fifo", kind: kFifo, mode: 0o644},
	{layer: 0, path: "emptydir", kind: kDir, mode: 0o755},
	{layer: 0, path: "xdir", kind: kDir, mode: 0o755, xattrs: [][2]string{{"user.d", "dir"}}},

	// Layer 1, the middle: whiteouts, an opaque dir, overrides.
	{layer: 1, path: "a-del.txt", kind: kWhiteout},
	{layer: 1, path: "gone", kind: kWhiteout},
	{layer: 1, path: "opq", kind: kOpaqueDir, mode: 0o755},
	{layer: 1, path: "opq/m", kind: kFile, size: 10, mode: 0o644},
	{layer: 1, path: "keep", kind: kDir, mode: 0o755},
	{layer: 1, path: "keep/k1", kind: kFile, size: 15, mode: 0o600},
	{layer: 1, path: "d1", kind: kDir, mode: 0o755},
	{layer: 1, path: "d1/f1", kind: kWhiteout},
	{layer: 1, path: "d1/d2", kind: kDir, mode: 0o755},
	{layer: 1, path: "d1/d2/mid.txt", kind: kFile, size: 30, mode: 0o644},
	{layer: 1, path: "mid-only", kind: kFile, size: 10, mode: 0o644, xattrs: [][2]string{{"user.m", "mid"}}},
	{layer: 1, path: "newdir-mid", kind: kDir, mode: 0o755},
	{layer: 1, path: "newdir-mid/n1", kind: kFile, size: 10, mode: 0o644},
	{layer: 1, path: "mhl1", kind: kFile, size: 64, mode: 0o644},
	{layer: 1, path: "mhl2", kind: kHardlink, arg: "mhl1"},

	// Layer 2, the top: type changes and a directory over a whiteout.
	{layer: 2, path: "swap", kind: kFile, size: 10, mode: 0o644},
	{layer: 2, path: "filedir", kind: kDir, mode: 0o755},
	{layer: 2, path: "filedir/fd1", kind: kFile, size: 10, mode: 0o644},
	{layer: 2, path: "d1", kind: kDir, mode: 0o711},
	{layer: 2, path: "d1/top.txt", kind: kFile, size: 10, mode: 0o644},
	{layer: 2, path: "keep", kind: kDir, mode: 0o755},
	{layer: 2, path: "keep/k2", kind: kFile, size: 25, mode: 0o644, xattrs: [][2]string{{"user.top", "1"}}},
	{layer: 2, path: "top-link", kind: kSymlink, arg: "keep/k2"},
	{layer: 2, path: "gone", kind: kDir, mode: 0o755},
	{layer: 2, path: "gone/new", kind: kFile, size: 10, mode: 0o644},
}

const fixtureLayers = 3

// fixtureTime is the base of the mtimes every fixture entry gets: long
// ago, so that Snapshot can tell a preserved time from one set by a write.
const fixtureTime = 1420070400 // 2015-01-01

// FixtureNames returns what the fixture shows in the merged tree: every
// visible path and the directories among them (the root is ""), and the
// ghosts, paths of the lower layers that whiteouts or opaque directories
// hide. All are sorted.
func FixtureNames() (paths, dirs, ghosts []string) {
	merged := map[string]bool{} // path -> is a directory
	everSeen := map[string]bool{}
	removeUnder := func(p string) {
		for q := range merged {
			if strings.HasPrefix(q, p+"/") {
				delete(merged, q)
			}
		}
	}
	for l := range fixtureLayers {
		for _, e := range fixture {
			if e.layer != l {
				continue
			}
			for p := path.Dir(e.path); p != "."; p = path.Dir(p) {
				merged[p] = true // parents are directories
			}
			switch e.kind {
			case kWhiteout:
				delete(merged, e.path)
				removeUnder(e.path)
				continue
			case kOpaqueDir:
				removeUnder(e.path)
			case kDir:
				if isDir, ok := merged[e.path]; ok && !isDir {
					removeUnder(e.path)
				}
			default:
				removeUnder(e.path)
			}
			merged[e.path] = e.kind == kDir || e.kind == kOpaqueDir
			everSeen[e.path] = true
		}
	}
	// A directory over a whiteout hides what was below the whiteout.
	dirs = []string{""}
	for p, isDir := range merged {
		paths = append(paths, p)
		if isDir {
			dirs = append(dirs, p)
		}
	}
	for p := range everSeen {
		if _, ok := merged[p]; !ok {
			ghosts = append(ghosts, p)
		}
	}
	sort.Strings(paths)
	sort.Strings(dirs)
	sort.Strings(ghosts)
	return paths, dirs, ghosts
}

// BuildStack creates a fresh stack under dir (which must exist and be
// empty or missing): l0, l1, l2, upper, work and mnt. Overlay metadata
// goes into ns's xattrs. Owners other than root are set only where this
// process may chown (root in the initial user namespace); every other
// detail, including mtimes, is the same on every call.
func BuildStack(dir string, ns layer.Namespace) (*Stack, error) {
	s := &Stack{
		Dir:       dir,
		Upper:     filepath.Join(dir, "upper"),
		Work:      filepath.Join(dir, "work"),
		Target:    filepath.Join(dir, "mnt"),
		Namespace: ns,
	}
	layers := make([]string, fixtureLayers)
	for i := range layers {
		layers[i] = filepath.Join(dir, fmt.Sprintf("l%d", i))
		s.Lowers = append([]string{layers[i]}, s.Lowers...)
	}
	for _, d := range append([]string{dir, s.Upper, s.Work, s.Target}, layers...) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("build stack %s: %w", dir, err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("build stack %s: %w", dir, err)
		}
	}
	chown := userns.Privileged()
	for _, e := range fixture {
		if err := buildEntry(layers[e.layer], e, ns, chown); err != nil {
			return nil, fmt.Errorf("build stack %s: layer %d: %s: %w", dir, e.layer, e.path, err)
		}
	}
	for _, l := range append(layers, s.Upper) {
		if err := setTimes(l); err != nil {
			return nil, fmt.Errorf("build stack %s: %w", dir, err)
		}
	}
	return s, nil
}

func buildEntry(root string, e fixtureEntry, ns layer.Namespace, chown bool) error {
	p := filepath.Join(root, e.path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	switch e.kind {
	case kFile:
		if err := os.WriteFile(p, Content(e.layer, e.path, e.size), 0o600); err != nil {
			return err
		}
	case kDir, kOpaqueDir:
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if e.kind == kOpaqueDir {
			if err := withDir(p, func(fd int) error { return layer.MakeOpaque(fd, ns) }); err != nil {
				return err
			}
		}
	case kSymlink:
		return os.Symlink(e.arg, p)
	case kHardlink:
		return os.Link(filepath.Join(root, e.arg), p)
	case kFifo:
		if err := unix.Mkfifo(p, 0o600); err != nil {
			return &os.PathError{Op: "mkfifo", Path: p, Err: err}
		}
	case kWhiteout:
		return withDir(filepath.Dir(p), func(fd int) error { return layer.MakeWhiteout(fd, filepath.Base(p), ns) })
	}
	if chown && e.owner != 0 {
		if err := os.Lchown(p, e.owner, e.owner); err != nil {
			return err
		}
	}
	if err := unix.Chmod(p, e.mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: p, Err: err}
	}
	for _, x := range e.xattrs {
		if err := unix.Lsetxattr(p, x[0], []byte(x[1]), 0); err != nil {
			return &os.PathError{Op: "setxattr " + x[0], Path: p, Err: err}
		}
	}
	return nil
}

func withDir(dir string, fn func(fd int) error) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return fn(fd)
}

// setTimes gives every entry under root (root too) a fixed atime and
// mtime derived from its path, children before parents.
func setTimes(root string) error {
	var all []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		all = append(all, p)
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(all) - 1; i >= 0; i-- {
		rel, _ := filepath.Rel(root, all[i])
		t := unix.NsecToTimespec((fixtureTime + int64(hashString(rel)%1000000)) * 1e9)
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, all[i], []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "utimes", Path: all[i], Err: err}
		}
	}
	return nil
}

// Content returns the deterministic content of a fixture file.
func Content(layerIndex int, p string, size int) []byte {
	r := rand.New(rand.NewPCG(uint64(layerIndex), hashString(p)))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
