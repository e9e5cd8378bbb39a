package selector

import (
	"os"
	"testing"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(testutil.Main(m))
}
