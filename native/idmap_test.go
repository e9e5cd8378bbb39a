package native

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ovl-dev/ovl/layer"
)

// TestCheckRefusesIDMapping: kernel overlay has no owner mapping of its
// own (layer.Spec.UIDMapping is the FUSE backend's), so a mapped spec is
// refused by name, never mounted without it.
func TestCheckRefusesIDMapping(t *testing.T) {
	root := t.TempDir()
	s := layer.Spec{Lowers: []string{filepath.Join(root, "l0"), filepath.Join(root, "l1")}, Target: filepath.Join(root, "m"),
		GIDMapping: []layer.IDMapping{{Container: 0, Host: 200000, Size: 65536}}}
	for _, d := range append([]string{s.Target}, s.Lowers...) {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := Check(s)
	var se *layer.SpecError
	if !errors.As(err, &se) || se.Field != "uidmapping/gidmapping" || !errors.Is(err, ErrOption) {
		t.Errorf("Check of a mapped spec = %v, want a SpecError of uidmapping/gidmapping wrapping ErrOption", err)
	}
}
