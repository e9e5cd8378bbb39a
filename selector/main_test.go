package selector

import (
	"os"
	"testing"

	"github.com/ovl-dev/ovl/internal/reexec"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}
