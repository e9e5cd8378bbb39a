package fusefs

import (
	"os"
	"path/filepath"
	"testing"

	"ovl/internal/testutil"
)

func TestSmoke(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 2)
	writeFiles(t, s.lowers[1], map[string]string{"a": "lower1-a", "d/x": "x1", "d/y": "y1", "gone": "g"})
	writeFiles(t, s.lowers[0], map[string]string{"a": "lower0-a", "d/z": "z0"})
	mountFuse(t, s.spec())
	b, err := os.ReadFile(filepath.Join(s.target, "a"))
	if err != nil || string(b) != "lower0-a" {
		t.Fatalf("read a: %q %v", b, err)
	}
	ents, err := os.ReadDir(filepath.Join(s.target, "d"))
	t.Logf("d: %v %v", ents, err)
	if err := os.WriteFile(filepath.Join(s.target, "d/x"), []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.target, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.target, "nd"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadDir(s.target)
	t.Logf("root: %v", out)
	b, _ = os.ReadFile(filepath.Join(s.upper, "d/x"))
	t.Logf("upper d/x: %q", b)
}
