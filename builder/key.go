package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/ovl-dev/ovl/vagga"
)

// keyVersion changes when the meaning of a layer changes, so that layers
// built by an older ovl are not reused.
const keyVersion = "ovl-build-v2"

// stepKey is the cache key of a step: a hash of the previous step's key,
// the step as written (vagga.Canonical) and the content of every project
// file it reads. Host paths, times and the backend are not part of it, so
// the same project gives the same keys on any machine.
func stepKey(parent string, s vagga.Step, hashes *fileHashes) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nparent %s\nstep %s\n", keyVersion, parent, vagga.Canonical(s))
	if r, ok := s.(vagga.Reader); ok {
		o, err := readOptions(s)
		if err != nil {
			return "", &StepError{Pos: s.Position(), Step: s.Summary(), Err: fmt.Errorf("%w: %v", ErrPath, err),
				Hint: "fix the step's rules in vagga.yaml"}
		}
		for _, p := range r.HostPaths() {
			sum, err := hashes.tree(p, o)
			if err != nil {
				return "", &StepError{Pos: s.Position(), Step: s.Summary(), Err: err,
					Hint: "the step reads this file of the project: create it, or fix the path in vagga.yaml"}
			}
			fmt.Fprintf(h, "reads %s\n", sum)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readOptions says how the project files step s reads are walked: a
// !Copy source as it will be copied (its filter applied, a symlink
// source kept as a symlink), a !Depends path through a symlink that
// stays in the project, with its filter, a tarball through such a
// symlink.
func readOptions(s vagga.Step) (walkOptions, error) {
	switch s := s.(type) {
	case *vagga.CopyStep:
		f, err := newCopyFilter(s.Filter)
		return walkOptions{filter: f}, err
	case *vagga.DependsStep:
		f, err := newCopyFilter(s.Filter)
		return walkOptions{followStart: true, filter: f}, err
	}
	return walkOptions{followStart: true}, nil
}

// containerStepKey is the key of !Container NAME: the parent's key.
func containerStepKey(parentKey string) string {
	return hashStrings(keyVersion, "container", parentKey)
}

func hashStrings(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileHashes hashes project files for step keys, remembering regular
// files by inode, size and change time in a cache file so that a rebuild
// does not read a large tarball again.
type fileHashes struct {
	mu      sync.Mutex
	dir     string // the project directory: nothing outside it is read
	path    string // the cache file; "" keeps the cache in memory
	entries map[string]fileHashEntry
	dirty   bool
}

type fileHashEntry struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
	Ctime int64  `json:"ctime"`
	Sum   string `json:"sum"`
}

// loadFileHashes returns the hashes of the project in dir, cached in the
// file path.
func loadFileHashes(dir, path string) *fileHashes {
	fh := &fileHashes{dir: dir, path: path, entries: map[string]fileHashEntry{}}
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &fh.entries) // a damaged cache is rebuilt
	}
	return fh
}

// save writes the cache back, atomically, if it changed.
func (fh *fileHashes) save() error {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	if !fh.dirty || fh.path == "" {
		return nil
	}
	b, err := json.Marshal(fh.entries)
	if err != nil {
		return err
	}
	if err := privateDir(filepath.Dir(fh.path)); err != nil { // the store's .layers
		return err
	}
	tmp := fmt.Sprintf("%s.%d", fh.path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	fh.dirty = false
	return os.Rename(tmp, fh.path)
}

// tree hashes the project file or directory at p as walkProject reaches
// it (never through a symlink out of the project): for a directory every
// entry's relative name, type and permission bits, and content or symlink
// target, in name order, leaving out what o.skip leaves out. Owners and
// times are left out: they differ between checkouts of the same project.
func (fh *fileHashes) tree(p string, o walkOptions) (string, error) {
	var sum string
	h := sha256.New()
	err := walkProject(fh.dir, p, o, func(f *projectFile) error {
		if f.rel == "" && !f.isDir() {
			var err error
			sum, err = fh.entry(p, f)
			return err
		}
		entry := ""
		if !f.isDir() {
			var err error
			if entry, err = fh.entry(filepath.Join(p, f.rel), f); err != nil {
				return err
			}
		}
		rel := f.rel
		if rel == "" {
			rel = "."
		}
		fmt.Fprintf(h, "%q %o %s\n", rel, f.st.Mode, entry)
		return nil
	})
	if err != nil || sum != "" {
		return sum, err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// entry hashes one non-directory: a symlink's target, a regular file's
// content (cached by its path p), or just the type of anything else.
func (fh *fileHashes) entry(p string, f *projectFile) (string, error) {
	switch {
	case f.isLink():
		t, err := f.readlink()
		return "link:" + t, err
	case !f.isReg():
		return "", nil
	}
	st := &f.st
	want := fileHashEntry{Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
	fh.mu.Lock()
	got, ok := fh.entries[p]
	fh.mu.Unlock()
	if ok && got.Ino == want.Ino && got.Size == want.Size && got.Mtime == want.Mtime && got.Ctime == want.Ctime {
		return got.Sum, nil
	}
	file, err := f.open()
	if err != nil {
		return "", err
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	want.Sum = hex.EncodeToString(h.Sum(nil))
	fh.mu.Lock()
	fh.entries[p] = want
	fh.dirty = true
	fh.mu.Unlock()
	return want.Sum, nil
}

// sortedEnv returns vars as NAME=value, later values of a name winning,
// sorted by name.
func sortedEnv(vars []vagga.EnvVar) []string {
	m := map[string]string{}
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
