package builder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// Store is a project's build state under its .vagga directory:
//
//	.vagga/.layers/<key>/layer   a sealed step layer (or squash of layers)
//	.vagga/.layers/.tmp/         layers being written, renamed into place
//	.vagga/.roots/<name>.<hash8>/root   a flattened container
//	.vagga/<name> -> .roots/<name>.<hash8>/root
//	.vagga/.locks/<name>.lock    serialises builds of one container
//
// A layer appears under its key only when complete: it is written under
// .tmp and renamed, so an interrupted or failed step leaves nothing a
// later build could mistake for a finished layer. The <key> directory is
// then made read-only (sealed): the layer's own root keeps the container
// root's mode, so the seal is one level up.
//
// .layers and .roots, and every <key> and <name>.<hash8> in them, are
// private to the user who builds (0700, sealed 0500), as vagga keeps its
// .vagga: a root built by root holds set-id root binaries and device
// nodes that other users must not reach through the path. Containers
// reach their roots through their mounts, which the path's mode does not
// restrict.
type Store struct {
	// Dir is the .vagga directory.
	Dir string
}

// NewStore returns the store of the project in projectDir.
func NewStore(projectDir string) *Store {
	return &Store{Dir: filepath.Join(projectDir, ".vagga")}
}

// privateMode is the mode of the store's directories of layers and roots.
const privateMode = 0o700

// privateDir makes the directory p of the store, and its missing
// parents, with privateMode; an existing p gets that mode too (stores of
// older versions had 0755).
func privateDir(p string) error {
	if err := os.MkdirAll(p, privateMode); err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != privateMode {
		return os.Chmod(p, privateMode)
	}
	return nil
}

// makePrivate makes sure .layers and .roots exist with privateMode.
func (s *Store) makePrivate() error {
	for _, d := range []string{s.layersDir(), s.rootsDir()} {
		if err := privateDir(d); err != nil {
			return fmt.Errorf("layer store: %w", err)
		}
	}
	return nil
}

func (s *Store) layersDir() string { return filepath.Join(s.Dir, ".layers") }
func (s *Store) rootsDir() string  { return filepath.Join(s.Dir, ".roots") }
func (s *Store) tmpDir() string    { return filepath.Join(s.layersDir(), ".tmp") }

// Layer returns the directory of the layer with key; it exists only once
// the layer is complete.
func (s *Store) Layer(key string) string { return filepath.Join(s.layersDir(), key, "layer") }

// Has reports whether the layer with key is complete.
func (s *Store) Has(key string) bool {
	fi, err := os.Lstat(s.Layer(key))
	return err == nil && fi.IsDir()
}

// Empty reports whether the complete layer with key has no entries (a
// step such as !Env, or a command that wrote no file).
func (s *Store) Empty(key string) (bool, error) { return treeEmpty(s.Layer(key)) }

// emptyLayer returns, as a one-layer stack, a layer with nothing in it.
func (s *Store) emptyLayer() ([]string, error) {
	key := hashStrings(keyVersion, "empty")
	if !s.Has(key) {
		p, err := s.newPending(key)
		if err != nil {
			return nil, err
		}
		if err := p.Commit(); err != nil {
			return nil, err
		}
	}
	return []string{s.Layer(key)}, nil
}

// dirEmpty reports whether directory p has no entries.
func dirEmpty(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, fs.ErrNotExist) || len(names) == 0 {
		return true, nil
	}
	return false, err
}

// pending is a layer being written.
type pending struct {
	store *Store
	key   string
	dir   string // the tmp directory holding "layer"
}

// Path is where the layer's content goes.
func (p *pending) Path() string { return filepath.Join(p.dir, "layer") }

// newPending makes a fresh, empty layer directory for key, owned by the
// caller with mode 0755 (the container root's usual mode).
func (s *Store) newPending(key string) (*pending, error) {
	for _, d := range []string{s.layersDir(), s.tmpDir()} {
		if err := privateDir(d); err != nil {
			return nil, fmt.Errorf("layer store: %w", err)
		}
	}
	dir, err := os.MkdirTemp(s.tmpDir(), tmpPrefix()+key[:min(16, len(key))]+".")
	if err != nil {
		return nil, fmt.Errorf("layer store: %w", err)
	}
	p := &pending{store: s, key: key, dir: dir}
	if err := os.Mkdir(p.Path(), 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("layer store: %w", err)
	}
	// MkdirTemp and the umask may have narrowed the mode.
	if err := os.Chmod(p.Path(), 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// Commit moves the finished layer under its key and seals it (0500). If another
// build committed the same key meanwhile, that layer is kept (it has the
// same content by construction) and this one is dropped.
func (p *pending) Commit() error {
	final := filepath.Dir(p.store.Layer(p.key))
	if err := os.Rename(p.dir, final); err != nil {
		if p.store.Has(p.key) {
			return p.Discard()
		}
		return fmt.Errorf("commit layer %s: %w", final, err)
	}
	if err := os.Chmod(final, 0o500); err != nil {
		return fmt.Errorf("seal layer %s: %w", final, err)
	}
	return nil
}

// Discard removes the unfinished layer.
func (p *pending) Discard() error { return removeTree(p.dir) }

// tmpPrefix starts the names of unfinished layers and roots: it carries
// the builder's pid, so that `ovl clean --old` removes only those of
// builds that are over.
func tmpPrefix() string { return "tmp-" + strconv.Itoa(os.Getpid()) + "-" }

var tmpName = regexp.MustCompile(`^\.?tmp-(\d+)-`)

// buildRunning reports whether the unfinished layer or root name may
// still be written by a live process.
func buildRunning(name string) bool {
	m := tmpName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, _ := strconv.Atoi(m[1])
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// removeAll is layer.RemoveAll, its error naming p.
func removeAll(p string) error {
	if err := layer.RemoveAll(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
