package integration

import (
	"os"
	"testing"

	"github.com/ovl-dev/ovl/internal/kernelsim"
	"github.com/ovl-dev/ovl/internal/kerneltest"
)

// TestKernels is ovl's whole acceptance on simulated older kernels
// (internal/kerneltest): every kernel of kernelsim.All and three that
// combine two differences, as root and as uid 65534, each with ovl check,
// a writable run, a Snapshot volume, ovl mount of 300 layers with long
// paths and a 60-step build (or the one line saying why it cannot work).
func TestKernels(t *testing.T) {
	if _, ok := kernelsim.Active(); !ok && os.Getenv("OVL_INTEGRATION") != "1" {
		t.Skip("skipping: every simulated kernel with a 60-step build each; run make test-integration (OVL_INTEGRATION=1)")
	}
	var bin string
	if _, ok := kernelsim.Active(); !ok {
		bin = kerneltest.BuildOVL(t, "../cmd/ovl")
	}
	kernels := append(kernelsim.All(),
		// An ordinary user can make no namespace and has no FUSE: copies
		// only, and no runs.
		kernelsim.Combine(kernelsim.NoUserns, kernelsim.NoDevFuse),
		// Before Linux 5.2 (and 5.8): no new mount API, no whiteout devices.
		kernelsim.Combine(kernelsim.NoMountAPI, kernelsim.NoMknod),
		// Debian 12 (6.1) with user namespaces off.
		kernelsim.Combine(kernelsim.LegacyParser, kernelsim.NoUserns))
	kerneltest.Run(t, bin, kerneltest.Cells(kernels...), kerneltest.Options{
		BuildSteps: func(kerneltest.Cell) int { return 60 },
	})
}
