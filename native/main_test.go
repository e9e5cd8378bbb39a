package native

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(testutil.Main(m))
}

// writeTree creates files under root: a key ending in "/" is a directory,
// any other key a file with the value as its content.
func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// mkdirs creates each directory and returns their paths, in order.
func mkdirs(t testing.TB, paths ...string) []string {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// readFile returns the content of p, failing t if it cannot be read.
func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mountsUnder returns the mount points in this mount namespace at or
// below dir (which must be canonical), from /proc/self/mountinfo. Other
// tests on the machine mount elsewhere, so only dir's part is compared.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	return mountinfo.Under(entries, dir)
}

// listTree returns every path under root, relative, sorted: to show that
// a refused mount created nothing.
func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
