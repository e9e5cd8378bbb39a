package fusefs

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// posixSkip names the posixtest cases that fail on plain tmpfs too, or
// that test what a union does differently by design; each says why.
var posixSkip = map[string]string{
	// POSIX locks belong to a process, so the suite's second lock from
	// the same process never conflicts: this fails on tmpfs as well.
	"FcntlFlockLocksFile": "fails on plain tmpfs too (one process cannot conflict with its own POSIX lock)",
}

// TestPosix runs go-fuse's POSIX conformance suite on a fusefs mount with
// a lower layer and an upper, each case on a fresh stack.
func TestPosix(t *testing.T) {
	t.Parallel() // beside the package's other long tests
	testutil.RequireRoot(t)
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkip[name]; ok {
				t.Skip(why)
			}
			s := newStack(t, t.TempDir(), 1)
			mountFuse(t, s.spec())
			posixtest.All[name](t, s.target)
		})
	}
}
