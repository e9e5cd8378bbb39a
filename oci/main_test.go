package oci

import (
	"os"
	"testing"

	"github.com/ovl-dev/ovl/internal/reexec"
)

// TestMain lets the test binary serve as the fusefs daemon the mount
// tests start.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}
