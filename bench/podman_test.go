package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSubtreeNear(t *testing.T) {
	tree := t.TempDir()
	for dir, n := range map[string]int{"a": 3, "b/x": 10, "b/y": 40, "c": 100} {
		if err := os.MkdirAll(filepath.Join(tree, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := os.WriteFile(filepath.Join(tree, dir, fmt.Sprint(i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		n    int
		want string
	}{{1, "a"}, {12, "b/x"}, {45, "b"}, {35, "b/y"}, {1000, "c"}} {
		got, err := subtreeNear(tree, tc.n)
		if err != nil || got != tc.want {
			t.Errorf("subtreeNear(%d) = %q, %v; want %q", tc.n, got, err, tc.want)
		}
	}
	if _, err := subtreeNear(t.TempDir(), 5); err == nil || !strings.Contains(err.Error(), "no subdirectory") {
		t.Errorf("an empty tree: got %v, want an error saying it has no subdirectory", err)
	}
}
