package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ovl-dev/ovl/internal/busybox"
)

// FixtureConfig says what the workloads run over.
type FixtureConfig struct {
	// Tree is the lower tree to copy, e.g. /usr/local/go.
	Tree string `json:"tree"`
	// MaxFiles, when positive, copies only the first MaxFiles regular
	// files of Tree (in walk order) and their directories: the quick tree.
	MaxFiles int `json:"max_files"`
	// MaxFileSize, when positive, leaves out larger files with MaxFiles.
	MaxFileSize int64 `json:"max_file_size"`
	// BigSize is the size in bytes of the file the sequential read and
	// write workloads use.
	BigSize int64 `json:"big_size"`
	// UntarFiles is how many files the untar workload's archive holds.
	UntarFiles int `json:"untar_files"`
	// AppendFiles is how many lower files the copy-up workload appends to.
	AppendFiles int `json:"append_files"`
	// Layers and LayerFiles shape the deep stack: Layers layers of
	// LayerFiles files each.
	Layers     int `json:"layers"`
	LayerFiles int `json:"layer_files"`
	// StormFiles is how many files the create/stat/unlink storm makes.
	StormFiles int `json:"storm_files"`
}

// Fixture is the prepared input of every workload, under one directory.
type Fixture struct {
	Config FixtureConfig
	// Root is a minimal container root: busybox in bin/ (when installed)
	// and the tree under data/.
	Root string
	// Tree is Root/data, the copy of the lower tree.
	Tree string
	// Files and Bytes count the tree's regular files and their sizes.
	Files int
	Bytes int64
	// Big is a layer holding one file, big.bin, of Config.BigSize bytes.
	Big string
	// Tarball holds the first Config.UntarFiles files of the tree, and
	// TarFiles how many it really holds.
	Tarball  string
	TarFiles int
	// TarLast is the last file in Tarball, which the untar workload
	// checks arrived whole.
	TarLast string
	// RootTar is a tarball of Root, the base of the build workloads.
	RootTar string
	// AppendList names (one per line, relative to the tree) the files the
	// copy-up workload appends to.
	AppendList string
	// RmSubtree is the top-level directory of the tree with the most
	// files, which the rm -rf workload removes.
	RmSubtree string
	// Layers are the deep stack's layers, top first, and LookupList the
	// names the lookup workload stats (each layer's files and as many
	// missing names).
	Layers     []string
	LookupList string
	// Busybox is empty when busybox-static is not installed; the workloads
	// that run a container then report why they are unavailable.
	Busybox string
}

const fixtureStamp = "fixture.json"

// fixtureVersion changes whenever the fixture's layout does, so that an
// old fixture is rebuilt rather than reused.
const fixtureVersion = 5

// PrepareFixture builds the fixture in dir, or reuses the one an earlier
// run left there when it was made from the same config and tree.
func PrepareFixture(ctx context.Context, dir string, cfg FixtureConfig, logf func(string, ...any)) (*Fixture, error) {
	src, err := filepath.Abs(cfg.Tree)
	if err != nil {
		return nil, err
	}
	cfg.Tree = src
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("tree %s: not a directory (give one with --tree DIR)", src)
	}
	f := &Fixture{
		Config:     cfg,
		Root:       filepath.Join(dir, "root"),
		Big:        filepath.Join(dir, "big"),
		Tarball:    filepath.Join(dir, "untar.tar"),
		RootTar:    filepath.Join(dir, "root.tar"),
		AppendList: filepath.Join(dir, "append.list"),
		LookupList: filepath.Join(dir, "lookup.list"),
	}
	f.Tree = filepath.Join(f.Root, "data")
	for i := 0; i < cfg.Layers; i++ {
		f.Layers = append(f.Layers, filepath.Join(dir, "layers", fmt.Sprintf("%02d", cfg.Layers-1-i)))
	}
	f.Busybox, _ = findBusybox()

	stampPath := filepath.Join(dir, fixtureStamp)
	if old, err := os.ReadFile(stampPath); err == nil {
		var st fixtureStampData
		if json.Unmarshal(old, &st) == nil && st.Version == fixtureVersion && st.Config == cfg && st.Busybox == f.Busybox {
			f.Files, f.Bytes, f.TarFiles, f.TarLast, f.RmSubtree = st.Files, st.Bytes, st.TarFiles, st.TarLast, st.RmSubtree
			logf("fixture: reusing %s (%d files, %d MB)", dir, f.Files, f.Bytes>>20)
			return f, nil
		}
	}
	logf("fixture: building in %s from %s", dir, src)
	os.Remove(stampPath)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(f.Tree, 0o755); err != nil {
		return nil, err
	}
	if err := f.copyTree(ctx, src); err != nil {
		return nil, err
	}
	if err := f.scan(); err != nil {
		return nil, err
	}
	if err := f.addBusybox(); err != nil {
		return nil, err
	}
	if err := f.makeBig(); err != nil {
		return nil, err
	}
	if err := f.makeTarballs(ctx); err != nil {
		return nil, err
	}
	if err := f.makeLayers(); err != nil {
		return nil, err
	}
	st, _ := json.MarshalIndent(fixtureStampData{Version: fixtureVersion, Config: cfg, Busybox: f.Busybox, Files: f.Files,
		Bytes: f.Bytes, TarFiles: f.TarFiles, TarLast: f.TarLast, RmSubtree: f.RmSubtree}, "", "  ")
	if err := os.WriteFile(stampPath, st, 0o644); err != nil {
		return nil, err
	}
	logf("fixture: %d files, %d MB", f.Files, f.Bytes>>20)
	return f, nil
}

type fixtureStampData struct {
	Version   int           `json:"version"`
	Config    FixtureConfig `json:"config"`
	Busybox   string        `json:"busybox"`
	Files     int           `json:"files"`
	Bytes     int64         `json:"bytes"`
	TarFiles  int           `json:"tar_files"`
	TarLast   string        `json:"tar_last"`
	RmSubtree string        `json:"rm_subtree"`
}

func findBusybox() (string, error) {
	p, err := busybox.Find()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrMissing, err)
	}
	return p, nil
}

// regularFiles lists the regular files under dir, relative, in walk order.
func regularFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

func writeList(path string, names []string) error {
	return os.WriteFile(path, []byte(strings.Join(names, "\n")+"\n"), 0o644)
}

// ReadList reads a file of names, one per line.
func ReadList(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

func (f *Fixture) copyTree(ctx context.Context, src string) error {
	if f.Config.MaxFiles <= 0 {
		if out, err := exec.CommandContext(ctx, "cp", "-a", src+"/.", f.Tree+"/").CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s: %w: %s", src, err, out)
		}
		return nil
	}
	all, err := regularFiles(src)
	if err != nil {
		return fmt.Errorf("list %s: %w", src, err)
	}
	var files []string
	for _, rel := range all {
		if len(files) == f.Config.MaxFiles {
			break
		}
		if fi, err := os.Lstat(filepath.Join(src, rel)); err == nil && (f.Config.MaxFileSize <= 0 || fi.Size() <= f.Config.MaxFileSize) {
			files = append(files, rel)
		}
	}
	list := filepath.Join(filepath.Dir(f.Root), "tree.list")
	if err := writeList(list, files); err != nil {
		return err
	}
	// cp --parents keeps each file's directories below src.
	cmd := exec.CommandContext(ctx, "sh", "-c", `xargs -d '\n' cp -a --parents -t "$1" < "$2"`, "sh", f.Tree, list)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copy %d files of %s: %w: %s", len(files), src, err, out)
	}
	return nil
}

// scan counts the tree and picks the copy-up files and the rm subtree.
func (f *Fixture) scan() error {
	files, err := regularFiles(f.Tree)
	if err != nil {
		return err
	}
	f.Files = len(files)
	perTop := map[string]int{}
	for _, rel := range files {
		fi, err := os.Lstat(filepath.Join(f.Tree, rel))
		if err != nil {
			return err
		}
		f.Bytes += fi.Size()
		if top, _, ok := strings.Cut(rel, "/"); ok {
			perTop[top]++
		}
	}
	best := 0
	for top, n := range perTop {
		if n > best || (n == best && top < f.RmSubtree) {
			best, f.RmSubtree = n, top
		}
	}
	if f.RmSubtree == "" {
		return fmt.Errorf("tree %s has no subdirectory with files for the rm -rf workload", f.Config.Tree)
	}
	// Spread the appends over the whole tree: every k-th file.
	n := min(f.Config.AppendFiles, len(files))
	var app []string
	for i := 0; i < n; i++ {
		app = append(app, files[i*len(files)/n])
	}
	return writeList(f.AppendList, app)
}

// addBusybox makes Root a container root around the tree (package
// busybox), when busybox is installed.
func (f *Fixture) addBusybox() error {
	if f.Busybox == "" {
		return nil
	}
	return busybox.WriteDir(f.Root, f.Busybox)
}

// makeBig writes big.bin with incompressible data.
func (f *Fixture) makeBig() error {
	if err := os.MkdirAll(f.Big, 0o755); err != nil {
		return err
	}
	fh, err := os.Create(filepath.Join(f.Big, "big.bin"))
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{'o', 'v', 'l'})
	for left := f.Config.BigSize; left > 0; left -= int64(len(buf)) {
		r.Read(buf)
		if _, err := fh.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			fh.Close()
			return fmt.Errorf("write %s: %w", fh.Name(), err)
		}
	}
	return fh.Close()
}

func (f *Fixture) makeTarballs(ctx context.Context) error {
	files, err := regularFiles(f.Tree)
	if err != nil {
		return err
	}
	if len(files) > f.Config.UntarFiles {
		files = files[:f.Config.UntarFiles]
	}
	f.TarFiles = len(files)
	if len(files) > 0 {
		f.TarLast = files[len(files)-1]
	}
	list := filepath.Join(filepath.Dir(f.Root), "untar.list")
	if err := writeList(list, files); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-cf", f.Tarball, "-C", f.Tree, "-T", list).CombinedOutput(); err != nil {
		return fmt.Errorf("tar %s: %w: %s", f.Tarball, err, out)
	}
	if out, err := exec.CommandContext(ctx, "tar", "-cf", f.RootTar, "-C", f.Root, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar %s: %w: %s", f.RootTar, err, out)
	}
	return nil
}

// makeLayers writes the deep stack: every layer adds LayerFiles files to
// one shared directory (so each lookup there walks the stack) and a
// directory of its own.
func (f *Fixture) makeLayers() error {
	var names []string
	for i, l := range f.Layers {
		n := len(f.Layers) - 1 - i // the layer's number, 0 at the bottom
		for _, d := range []string{"shared", fmt.Sprintf("own%02d", n)} {
			if err := os.MkdirAll(filepath.Join(l, d), 0o755); err != nil {
				return err
			}
		}
		for k := 0; k < f.Config.LayerFiles; k++ {
			name := fmt.Sprintf("shared/l%02d-%04d", n, k)
			if err := os.WriteFile(filepath.Join(l, name), []byte(name), 0o644); err != nil {
				return err
			}
			names = append(names, name)
			if err := os.WriteFile(filepath.Join(l, fmt.Sprintf("own%02d/%04d", n, k)), nil, 0o644); err != nil {
				return err
			}
		}
	}
	missing := len(names)
	for k := 0; k < missing; k++ {
		names = append(names, fmt.Sprintf("shared/missing-%05d", k))
	}
	slices.Sort(names)
	return writeList(f.LookupList, names)
}
