package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeTree writes a small tree: big/ has the most files, small/ fewer,
// and one file at the top.
func makeTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"big/sub", "small"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, size int) {
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(strings.Repeat("x", size)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 6; i++ {
		write(fmt.Sprintf("big/sub/f%d", i), 100)
	}
	write("small/a", 10)
	write("small/huge", 1<<20)
	write("top", 1)
	return dir
}

func TestPrepareFixture(t *testing.T) {
	src := makeTree(t)
	dir := filepath.Join(t.TempDir(), "fix")
	cfg := FixtureConfig{Tree: src, BigSize: 3 << 20, UntarFiles: 4, AppendFiles: 3, Layers: 3, LayerFiles: 2, StormFiles: 10}
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }
	f, err := PrepareFixture(context.Background(), dir, cfg, logf)
	if err != nil {
		t.Fatal(err)
	}
	if f.Files != 9 || f.Bytes != 6*100+10+(1<<20)+1 {
		t.Errorf("tree: %d files, %d bytes; want 9 and the sum of the sizes", f.Files, f.Bytes)
	}
	if f.RmSubtree != "big" {
		t.Errorf("rm subtree %q, want big (the top directory with the most files)", f.RmSubtree)
	}
	if got, _ := os.ReadFile(filepath.Join(f.Tree, "big/sub/f3")); len(got) != 100 {
		t.Errorf("the copy lacks big/sub/f3")
	}
	if fi, err := os.Stat(filepath.Join(f.Big, "big.bin")); err != nil || fi.Size() != 3<<20 {
		t.Errorf("big.bin: %v, want %d bytes", err, 3<<20)
	}
	app, err := ReadList(f.AppendList)
	if err != nil || len(app) != 3 {
		t.Fatalf("append list: %v %v, want 3 names", app, err)
	}
	for _, n := range app {
		if _, err := os.Stat(filepath.Join(f.Tree, n)); err != nil {
			t.Errorf("append list names %s, which the tree lacks", n)
		}
	}
	if f.TarFiles != 4 {
		t.Errorf("tarball holds %d files, want 4", f.TarFiles)
	}
	if len(f.Layers) != 3 || filepath.Base(f.Layers[0]) != "02" {
		t.Errorf("layers %v, want 3, top (02) first", f.Layers)
	}
	names, _ := ReadList(f.LookupList)
	if len(names) != 12 {
		t.Errorf("lookup list has %d names, want 3 layers × 2 files and as many missing", len(names))
	}
	for _, n := range names {
		in := 0
		for _, l := range f.Layers {
			if _, err := os.Lstat(filepath.Join(l, n)); err == nil {
				in++
			}
		}
		if missing := strings.Contains(n, "missing"); (in == 0) != missing {
			t.Errorf("lookup name %s is in %d layers", n, in)
		}
	}
	if f.Busybox != "" {
		if fi, err := os.Stat(filepath.Join(f.Root, "proc")); err != nil || !fi.IsDir() {
			t.Errorf("container root lacks /proc: %v", err)
		}
	}

	if f.TarLast == "" {
		t.Error("the untar workload has no file to check")
	}

	// A second call reuses it, with every fact about it; a changed config
	// rebuilds it.
	logs = nil
	again, err := PrepareFixture(context.Background(), dir, cfg, logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "reusing") {
		t.Errorf("second call did not reuse the fixture: %v", logs)
	}
	if again.Files != f.Files || again.Bytes != f.Bytes || again.TarFiles != f.TarFiles ||
		again.TarLast != f.TarLast || again.RmSubtree != f.RmSubtree {
		t.Errorf("reused fixture differs:\n got %+v\nwant %+v", again, f)
	}
	cfg.MaxFiles, cfg.MaxFileSize = 100, 1000
	f, err = PrepareFixture(context.Background(), dir, cfg, logf)
	if err != nil {
		t.Fatal(err)
	}
	if f.Files != 8 {
		t.Errorf("with MaxFileSize 1000: %d files, want 8 (small/huge left out)", f.Files)
	}
}

func TestPrepareFixtureBadTree(t *testing.T) {
	_, err := PrepareFixture(context.Background(), t.TempDir(), FixtureConfig{Tree: "/nonexistent/tree"}, func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tree") || !strings.Contains(err.Error(), "--tree") {
		t.Fatalf("err = %v, want one naming the tree and --tree", err)
	}
}

func TestWorkerOps(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("a\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "list"), []byte("a\nmissing-1\n"), 0o644)

	if err := opStorm([]string{filepath.Join(dir, "storm"), "50"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "storm")); !os.IsNotExist(err) {
		t.Errorf("storm left its directory behind: %v", err)
	}
	if err := opStat([]string{dir, filepath.Join(dir, "list")}); err != nil {
		t.Errorf("stat: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "missing-1"), nil, 0o644)
	if err := opStat([]string{dir, filepath.Join(dir, "list")}); err == nil {
		t.Error("stat accepted a 'missing' name that exists")
	}
	os.WriteFile(filepath.Join(dir, "list2"), []byte("a\n"), 0o644)
	if err := opAppend([]string{dir, filepath.Join(dir, "list2")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a")); string(got) != "a\n// ovl-bench\n" {
		t.Errorf("append: file is %q", got)
	}
	if err := opReadAll([]string{dir}); err != nil {
		t.Errorf("readall: %v", err)
	}
}
