package builder

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/vagga"

	"golang.org/x/sys/unix"
)

// project writes vagga.yaml and files into a fresh directory that uid
// 65534 can use too, and returns it.
func project(t *testing.T, yaml string, files map[string]string) string {
	t.Helper()
	dir := testutil.SharedDir(t)
	// Sealed layers are read-only: t.TempDir alone cannot remove them
	// as an ordinary user.
	t.Cleanup(func() { removeTree(filepath.Join(dir, ".vagga")) })
	writeProject(t, dir, yaml, files)
	return dir
}

func writeProject(t *testing.T, dir, yaml string, files map[string]string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "vagga.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// load parses the project's vagga.yaml.
func load(t *testing.T, dir string) *vagga.Config {
	t.Helper()
	cfg, err := vagga.Load(filepath.Join(dir, "vagga.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// recorder collects build events.
type recorder struct{ events []Event }

func (r *recorder) add(e Event) { r.events = append(r.events, e) }

// statuses lists the final status of each step, by index: "cached",
// "done" or "failed".
func (r *recorder) statuses() map[int]Status {
	out := map[int]Status{}
	for _, e := range r.events {
		if e.Index > 0 && e.Status != StatusRunning {
			out[e.Index] = e.Status
		}
	}
	return out
}

// buildOnce loads the project and builds container name with opts.
func buildOnce(t *testing.T, dir, name string, opts Options) (*Result, *recorder, error) {
	t.Helper()
	rec := &recorder{}
	opts.Events = rec.add
	r, err := New(load(t, dir), opts).Build(context.Background(), name)
	return r, rec, err
}

func mustBuild(t *testing.T, dir, name string, opts Options) (*Result, *recorder) {
	t.Helper()
	r, rec, err := buildOnce(t, dir, name, opts)
	if err != nil {
		t.Fatalf("build %s: %v", name, err)
	}
	return r, rec
}

var mtimeField = regexp.MustCompile(` mtime=\S+`)

// treeHash hashes what a user sees of a tree: names, types, modes,
// owners, contents, symlink targets, xattrs; not times, which differ
// between two builds of the same steps.
func treeHash(t testing.TB, dir string) string {
	t.Helper()
	return strings.Join(treeLines(t, dir), "\n")
}

func treeLines(t testing.TB, dir string) []string {
	lines := testutil.TreeListing(t, dir)
	for i, l := range lines {
		lines[i] = mtimeField.ReplaceAllString(l, "")
	}
	return lines
}

func statT(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

var time0 = time.Unix(1000, 0)
