package native

import (
	"context"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// BenchmarkMountUnmount measures one Mount and Unmount of a three-layer
// stack with upper, what every run or snapshot pays.
func BenchmarkMountUnmount(b *testing.B) {
	testutil.RequireRoot(b)
	spec := threeLayers(b, b.TempDir())
	testutil.CleanupMount(b, spec.Target)
	for b.Loop() {
		m, err := New().Mount(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Unmount(); err != nil {
			b.Fatal(err)
		}
	}
}
