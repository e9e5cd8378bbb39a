package copyback_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/layer"
)

// TestMountRefusesIDMapping: a copy translates no owners, so a mapped
// spec is refused, and nothing is copied.
func TestMountRefusesIDMapping(t *testing.T) {
	root := t.TempDir()
	s := layer.Spec{Lowers: []string{filepath.Join(root, "l")}, Target: filepath.Join(root, "m"),
		UIDMapping: []layer.IDMapping{{Container: 0, Host: 200000, Size: 65536}}}
	for _, d := range []string{s.Lowers[0], s.Target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Lowers[0], "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := copyback.New().Mount(context.Background(), s); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("copy of a mapped spec: %v, want backend.ErrUnavailable", err)
	}
	if entries, _ := os.ReadDir(s.Target); len(entries) > 0 {
		t.Errorf("the refused copy left %d entries in the target", len(entries))
	}
}
