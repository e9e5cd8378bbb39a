package difftest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// TestGenerateIsDeterministic: a seed is a replayable sequence, and
// different seeds give different sequences covering every kind of op.
func TestGenerateIsDeterministic(t *testing.T) {
	a, b := Generate(42, 200), Generate(42, 200)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("Generate(42) gave two different sequences")
	}
	if reflect.DeepEqual(a, Generate(43, 200)) {
		t.Fatal("Generate(42) and Generate(43) are the same")
	}
	seen := map[OpKind]bool{}
	for _, op := range a {
		seen[op.Kind] = true
	}
	for k := range opCount {
		if !seen[k] {
			t.Errorf("200 ops of seed 42 have no %s", k)
		}
	}
}

// TestHarnessCatchesRedirectDir runs kernel overlay against kernel
// overlay with redirect_dir=on, which renames directories of a lower
// layer instead of failing with EXDEV: the harness must name such a
// rename as the first divergence. Of 40 seeds it runs until 3 diverged.
func TestHarnessCatchesRedirectDir(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := Config{Dir: t.TempDir(), Namespace: layer.Trusted, Ops: 30, Replay: "seed %d"}
	errs := RunSeeds(context.Background(), cfg, Seeds(1, 40), Kernel(), Kernel("redirect_dir=on"), 3)
	var renames int
	for _, err := range errs {
		var f *Failure
		if !errors.As(err, &f) {
			t.Fatalf("not a divergence: %v", err)
		}
		if f.OpIndex >= 0 && f.Op.Kind == OpRename {
			renames++
			if f.ResA.Errno != unix.EXDEV || f.ResB.Errno == unix.EXDEV {
				t.Errorf("rename divergence without EXDEV on the kernel side:\n%v", f)
			}
		}
	}
	if renames == 0 {
		t.Fatalf("40 seeds found no rename divergence with redirect_dir=on; failures: %v", errs)
	}
	t.Logf("%d seeds diverged, %d first on a rename; one report:\n%v", len(errs), renames, errs[0])
}

// TestHarnessCatchesPlantedChange uses a mounter that quietly changes one
// file after mounting, as a buggy union might: the trees differ, and the
// report names the seed and how to replay it.
func TestHarnessCatchesPlantedChange(t *testing.T) {
	testutil.RequireRoot(t)
	planting := Kernel()
	planting.Name = "kernel+planted"
	mount := planting.Mount
	planting.Mount = func(ctx context.Context, s layer.Spec) (backend.Mount, error) {
		m, err := mount(ctx, s)
		if err == nil {
			err = os.WriteFile(filepath.Join(m.Target(), "planted"), []byte("x"), 0o644)
		}
		return m, err
	}
	cfg := Config{Dir: t.TempDir(), Namespace: layer.Trusted, Ops: 5, Replay: "OVL_DIFF_SEED=%d go test"}
	err := RunSeed(context.Background(), cfg, 7, Kernel(), planting)
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("RunSeed = %v, want a *Failure", err)
	}
	msg := f.Error()
	for _, want := range []string{"seed 7", `"planted": only under kernel+planted`, "replay: OVL_DIFF_SEED=7 go test"} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
}

// TestHarnessCatchesPlainCopy compares kernel overlay with a "mount" that
// is a plain copy of the merged tree, which writes nothing to the upper:
// the crossed mounts must show it.
func TestHarnessCatchesPlainCopy(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := Config{Dir: t.TempDir(), Namespace: layer.Trusted, Ops: 30}
	errs := RunSeeds(context.Background(), cfg, Seeds(1, 5), Kernel(), plainCopy(), 0)
	if len(errs) == 0 {
		t.Fatal("a plain copy agreed with kernel overlay on 5 seeds")
	}
	for _, err := range errs {
		if !strings.Contains(err.Error(), "layers written by copy differ") {
			t.Errorf("want a cross-mount difference in:\n%v", err)
		}
	}
}

// plainCopy "mounts" a stack by copying its merged view (read through a
// read-only kernel mount) into the target; changes never reach the upper.
func plainCopy() Mounter {
	return Mounter{Name: "copy", Mount: func(ctx context.Context, s layer.Spec) (backend.Mount, error) {
		ro := s
		ro.Target = s.Target + "-ro"
		ro.Upper, ro.Work = "", ""
		ro.Lowers = append([]string{s.Upper}, s.Lowers...)
		if err := os.Mkdir(ro.Target, 0o755); err != nil {
			return nil, err
		}
		m, err := Kernel().Mount(ctx, ro)
		if err != nil {
			return nil, err
		}
		defer m.Unmount()
		if out, err := exec.Command("cp", "-a", ro.Target+"/.", s.Target).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cp: %v: %s", err, out)
		}
		return copied(s.Target), nil
	}}
}

type copied string

func (c copied) Target() string { return string(c) }
func (c copied) Unmount() error { return nil }

// TestMountErrorStopsRun: a mounter that cannot mount fails the run with
// its own error (not as a divergence), after the first seed.
func TestMountErrorStopsRun(t *testing.T) {
	testutil.RequireRoot(t)
	errNope := errors.New("not implemented yet")
	broken := Mounter{Name: "broken", Mount: func(context.Context, layer.Spec) (backend.Mount, error) { return nil, errNope }}
	cfg := Config{Dir: t.TempDir(), Namespace: layer.Trusted, Ops: 5}
	errs := RunSeeds(context.Background(), cfg, Seeds(1, 10), Kernel(), broken, 0)
	if len(errs) != 1 || !errors.Is(errs[0], errNope) || errors.Is(errs[0], ErrDiverged) {
		t.Fatalf("RunSeeds = %v, want one error wrapping the mounter's", errs)
	}
	if !strings.Contains(errs[0].Error(), "mount with broken") {
		t.Errorf("error %q does not name the mounter", errs[0])
	}
	if entries, _ := os.ReadDir(cfg.Dir); len(entries) != 0 {
		t.Errorf("left behind in %s: %v", cfg.Dir, entries)
	}
}

// TestWriteAfterWriteOpens: every open for writing, and every create, is
// followed by a write to the same file, read-only opens are not, and the
// operations keep their order and are numbered afresh.
func TestWriteAfterWriteOpens(t *testing.T) {
	in := []Op{
		{Kind: OpOpen, Path: "r", Slot: 1, Flags: unix.O_RDONLY},
		{Kind: OpOpen, Path: "w", Slot: 2, Flags: unix.O_WRONLY | unix.O_APPEND},
		{Kind: OpCreate, Path: "c", Flags: unix.O_TRUNC},
		{Kind: OpStat, Path: "w"},
	}
	got := WriteAfterWriteOpens(in)
	want := []Op{
		{Kind: OpOpen, Path: "r", Slot: 1, Flags: unix.O_RDONLY, Index: 0},
		{Kind: OpOpen, Path: "w", Slot: 2, Flags: unix.O_WRONLY | unix.O_APPEND, Index: 1},
		{Kind: OpFdWrite, Slot: 2, Len: 1, Index: 2},
		{Kind: OpCreate, Path: "c", Flags: unix.O_TRUNC, Index: 3},
		{Kind: OpWrite, Path: "c", Len: 1, Index: 4},
		{Kind: OpStat, Path: "w", Index: 5},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%v\nwant\n%v", got, want)
	}
}
