package native

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestMountRefusesOCILayer checks that a stack with a lower layer that
// records the OCI format is refused, naming the layer: the kernel would
// show its ".wh." whiteouts as files.
func TestMountRefusesOCILayer(t *testing.T) {
	testutil.RequireRoot(t)
	spec := threeLayers(t, t.TempDir())
	fd, err := unix.Open(spec.Lowers[1], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := layer.RecordFormat(fd, layer.OCIFormat, layer.Trusted); err != nil {
		t.Fatal(err)
	}
	testutil.CleanupMount(t, spec.Target)
	m, err := New().Mount(context.Background(), spec)
	if err == nil {
		m.Unmount()
		t.Fatal("kernel overlay mounted a stack with an OCI-format layer")
	}
	if !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), spec.Lowers[1]) {
		t.Errorf("error %v, want ErrOption naming %s", err, spec.Lowers[1])
	}
}
