package difftest

import (
	"context"
	"os"
	"testing"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(testutil.Main(m))
}

// agreeing are pairs of mounters that must agree on every seed: kernel
// overlayfs against itself (the harness's sanity check), and against the
// native backend, which the fusefs differential test uses as its oracle.
var agreeing = []struct {
	name   string
	entry  string
	m1, m2 func() Mounter
}{
	{"kernel-kernel", "difftest-kernel-kernel", func() Mounter { return Kernel() }, func() Mounter { return Kernel() }},
	{"kernel-native", "difftest-kernel-native", func() Mounter { return Kernel() }, func() Mounter { return FromBackend(native.New()) }},
}

func init() {
	for _, a := range agreeing {
		RegisterEntry(a.entry, func() (Mounter, Mounter) { return a.m1(), a.m2() })
	}
}

// TestAgree runs 15 seeds on each pair of agreeing mounters, as root
// and as an ordinary user (inside a user namespace, with userxattr), and
// 5 on read-only stacks, all side by side; with OVL_STRESS=1 (make
// stress) 200 and 50.
func TestAgree(t *testing.T) {
	seeds, readOnly := Seeds(1, 15), 5
	if os.Getenv("OVL_STRESS") == "1" {
		seeds, readOnly = Seeds(1, 200), 50
	}
	for _, a := range agreeing {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			t.Run("root", func(t *testing.T) {
				t.Parallel()
				testutil.RequireRoot(t)
				cfg := Config{Dir: t.TempDir(), Namespace: layer.Trusted, Ops: 30,
					Replay: "go test ./internal/difftest -run 'TestAgree/" + a.name + "/root' (seed %d)"}
				for _, err := range RunSeeds(context.Background(), cfg, seeds, a.m1(), a.m2(), 3) {
					t.Error(err)
				}
			})
			t.Run("readonly", func(t *testing.T) {
				t.Parallel()
				testutil.RequireRoot(t)
				cfg := Config{Dir: t.TempDir(), Namespace: layer.Trusted, Ops: 30, ReadOnly: true}
				for _, err := range RunSeeds(context.Background(), cfg, seeds[:readOnly], a.m1(), a.m2(), 3) {
					t.Error(err)
				}
			})
			t.Run("nobody", func(t *testing.T) {
				t.Parallel()
				if !testutil.InNobodyChild() {
					testutil.RunAsNobody(t)
					return
				}
				cfg := Config{Dir: testutil.SharedDir(t), Namespace: layer.User, Ops: 30}
				errs, err := RunInUserNamespace(context.Background(), a.entry, cfg, seeds, 3)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range errs {
					t.Error(e)
				}
			})
		})
	}
}
