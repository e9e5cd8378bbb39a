package main

import (
	"testing"

	"github.com/ovl-dev/ovl/internal/kernelsim"
	"github.com/ovl-dev/ovl/internal/kerneltest"
)

// TestKernelsCLI runs ovl under each simulated kernel, as root and as uid
// 65534 (internal/kerneltest): ovl check, a writable run, a Snapshot
// volume and ovl mount of 300 layers with long paths everywhere; a
// 60-step build where mount(2) must take a stack over a page, in a user
// namespace (no new mount API, uid 65534). make test-integration builds
// in every cell, and under kernels that combine two differences.
func TestKernelsCLI(t *testing.T) {
	var bin string
	if _, ok := kernelsim.Active(); !ok {
		bin = checkBuildOVL(t)
	}
	kerneltest.Run(t, bin, kerneltest.Cells(kernelsim.All()...), kerneltest.Options{
		BuildSteps: func(c kerneltest.Cell) int {
			if c.Kernel.Name == kernelsim.NoMountAPI.Name && c.Nobody {
				return 60
			}
			return 0
		},
	})
}
