package copyback_test

import (
	"os"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestMain keeps ovl's directories in one of the test process
// (testutil.Main).
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
