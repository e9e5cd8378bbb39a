package difftest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/layer"
)

// Config says how RunSeed runs.
type Config struct {
	// Dir is where the two stacks of a seed are built (in a fresh
	// subdirectory, removed afterwards unless Keep).
	Dir string
	// Namespace is where the stacks keep overlay metadata: layer.User for
	// unprivileged mounts.
	Namespace layer.Namespace
	// Ops is the length of each sequence.
	Ops int
	// Replay is a command that reruns one seed, with %d for the seed; it
	// is printed with every failure.
	Replay string
	// Keep leaves the stacks of a failed seed on disk for inspection.
	Keep bool
	// MaxDiff caps the diff lines of one comparison in a report (0: 20).
	MaxDiff int
	// ReadOnly mounts the stacks without an upper: every change must
	// fail the same way (EROFS), and there is no crossed mount.
	ReadOnly bool
	// CopyUpAtFirstChange is for a subject that copies a lower file up
	// at its first change rather than when it is opened for writing, as
	// the kernel does (fusefs without StrictOpen): every open for
	// writing is followed by a write through it, so the sequences never
	// look into the window where the two differ by design.
	CopyUpAtFirstChange bool
}

// ErrDiverged is wrapped by every *Failure, for errors.Is.
var ErrDiverged = errors.New("the two mounts disagree")

// Failure reports how two mounters disagreed on one seed.
type Failure struct {
	Seed   int64
	A, B   string // mounter names
	Replay string // a command that runs this seed again
	// OpIndex is the first operation whose results differed, -1 if all
	// agreed; Op, ResA and ResB describe it.
	OpIndex    int
	Op         Op
	ResA, ResB Result
	// Diffs are the tree differences, one block per failed comparison.
	Diffs []string
	// Trace is the sequence up to the first differing op (all of it when
	// only the trees differ), each op with what A returned.
	Trace []string
	// Kept is where the stacks were left, if Config.Keep.
	Kept string
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %s and %s disagree", f.Seed, f.A, f.B)
	if f.OpIndex >= 0 {
		fmt.Fprintf(&b, "\n  first at op %d: %s\n    %s: %s\n    %s: %s", f.OpIndex, f.Op, f.A, f.ResA, f.B, f.ResB)
	}
	for _, d := range f.Diffs {
		b.WriteString("\n  " + strings.ReplaceAll(d, "\n", "\n  "))
	}
	if len(f.Trace) > 0 {
		fmt.Fprintf(&b, "\n  the operations (%s's results):\n    %s", f.A, strings.Join(f.Trace, "\n    "))
	}
	if f.Kept != "" {
		fmt.Fprintf(&b, "\n  stacks kept in %s", f.Kept)
	}
	if f.Replay != "" {
		fmt.Fprintf(&b, "\n  replay: %s", f.Replay)
	}
	return b.String()
}

func (f *Failure) Unwrap() error { return ErrDiverged }

// RunSeed runs the sequence of seed on two fresh stacks, A mounted by m1
// (the oracle) and B by m2, compares every result and both trees, then mounts B's
// layers with m1 and A's with m2 and compares again. It returns a
// *Failure when they disagree, another error when a stack cannot be
// built or mounted (the mounter's error, wrapped), nil when they agree.
// Everything it mounts is unmounted before it returns.
func RunSeed(ctx context.Context, cfg Config, seed int64, m1, m2 Mounter) (err error) {
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("seed-%d", seed))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("seed %d: %w", seed, err)
	}
	f := &Failure{Seed: seed, A: m1.Name, B: m2.Name, OpIndex: -1}
	if cfg.Replay != "" {
		f.Replay = fmt.Sprintf(cfg.Replay, seed)
	}
	defer func() {
		if cfg.Keep && err != nil {
			f.Kept = dir
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("seed %d: clean up: %w", seed, rerr)
		}
	}()
	r := run{cfg: cfg, f: f}
	if err := r.do(ctx, dir, seed, m1, m2); err != nil {
		return fmt.Errorf("seed %d: %w", seed, err)
	}
	if f.OpIndex >= 0 || len(f.Diffs) > 0 {
		f.Trace = r.trace
		return f
	}
	return nil
}

// run is the state of one RunSeed.
type run struct {
	cfg Config
	f   *Failure
	// userSet holds the xattr names the operations set.
	userSet map[string]bool
	// trace is Failure.Trace, kept until the run turns out to fail.
	trace []string
}

func (r *run) do(ctx context.Context, dir string, seed int64, m1, m2 Mounter) error {
	a, err := BuildStack(filepath.Join(dir, "a"), r.cfg.Namespace)
	if err != nil {
		return err
	}
	b, err := BuildStack(filepath.Join(dir, "b"), r.cfg.Namespace)
	if err != nil {
		return err
	}
	ops := Widen(seed, Generate(seed, r.cfg.Ops), r.cfg.ReadOnly)
	if r.cfg.CopyUpAtFirstChange {
		ops = WriteAfterWriteOpens(ops)
	}
	r.userSet = map[string]bool{}
	for _, op := range ops {
		if op.Kind == OpSetxattr {
			r.userSet[op.Name] = true
		}
	}

	// Live: the same operations on both.
	specA, specB := a.Spec(), b.Spec()
	if r.cfg.ReadOnly {
		specA.Upper, specA.Work, specB.Upper, specB.Work = "", "", "", ""
	}
	var treeA, treeB Tree
	err = withMounts(ctx, m1, specA, m2, specB, func(ta, tb string) error {
		if err := r.compareOps(ta, tb, ops, a, b); err != nil {
			return err
		}
		var err error
		if treeA, err = Snapshot(ta); err != nil {
			return fmt.Errorf("%s: %w", m1.Name, err)
		}
		if treeB, err = Snapshot(tb); err != nil {
			return fmt.Errorf("%s: %w", m2.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.diff("trees after the operations", treeA, treeB, m1.Name, m2.Name)
	r.leaks(treeA, m1.Name, "after the operations")
	r.leaks(treeB, m2.Name, "after the operations")

	if r.cfg.ReadOnly {
		return nil
	}
	// Both uppers must mark the same directories opaque: an opaque
	// marker where the kernel puts none hides what a lower layer gains
	// later (offline changes are allowed without index, redirect_dir
	// and metacopy).
	opA, err := opaqueDirs(a.Upper, r.cfg.Namespace)
	if err != nil {
		return err
	}
	opB, err := opaqueDirs(b.Upper, r.cfg.Namespace)
	if err != nil {
		return err
	}
	if !slices.Equal(opA, opB) {
		r.f.Diffs = append(r.f.Diffs, fmt.Sprintf("opaque directories of the uppers differ:\n  %s: %q\n  %s: %q", m1.Name, opA, m2.Name, opB))
	}

	// Crossed: each mounter reads the layers the other wrote.
	specB, err = b.CrossSpec("cross")
	if err != nil {
		return err
	}
	specA, err = a.CrossSpec("cross")
	if err != nil {
		return err
	}
	return withMounts(ctx, m1, specB, m2, specA, func(tb, ta string) error {
		crossB, err := Snapshot(tb)
		if err != nil {
			return fmt.Errorf("%s on %s's layers: %w", m1.Name, m2.Name, err)
		}
		crossA, err := Snapshot(ta)
		if err != nil {
			return fmt.Errorf("%s on %s's layers: %w", m2.Name, m1.Name, err)
		}
		r.diff("layers written by "+m2.Name, WithoutLinks(treeB), WithoutLinks(crossB), m2.Name, m1.Name)
		r.diff("layers written by "+m1.Name, WithoutLinks(treeA), WithoutLinks(crossA), m1.Name, m2.Name)
		r.leaks(crossB, m1.Name, "on layers written by "+m2.Name)
		r.leaks(crossA, m2.Name, "on layers written by "+m1.Name)
		return nil
	})
}

// opaqueDirs lists the directories of upper (relative paths, sorted)
// marked opaque in ns.
func opaqueDirs(upper string, ns layer.Namespace) ([]string, error) {
	var out []string
	err := filepath.WalkDir(upper, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		op, err := layer.DirOpacity(fd, ns)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if op == layer.OpaqueDir {
			rel, _ := filepath.Rel(upper, p)
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

// compareOps runs ops on both trees in turn and records the first op
// whose results differ. It runs the whole sequence on both regardless, so
// the trees can still be compared.
func (r *run) compareOps(ta, tb string, ops []Op, a, b *Stack) error {
	xa, err := NewExecutor(ta)
	if err != nil {
		return err
	}
	defer xa.Close()
	xb, err := NewExecutor(tb)
	if err != nil {
		return err
	}
	defer xb.Close()
	xa.Lowers, xa.Outside = a.Lowers, filepath.Join(a.Dir, "outside")
	xb.Lowers, xb.Outside = b.Lowers, filepath.Join(b.Dir, "outside")
	var trace []string
	for i, op := range ops {
		ra, rb := xa.Run(op), xb.Run(op)
		// Kernel overlayfs sometimes fails a rename with ESTALE where
		// POSIX wants success: renaming a file over a hard link of
		// itself made after copy-up, with userxattr (seed 20018 of 100
		// ops, as uid 65534). It changes nothing then, so an ESTALE from
		// the oracle is no verdict: the op is not compared.
		noVerdict := ra.Errno == unix.ESTALE
		if r.f.OpIndex < 0 {
			line := fmt.Sprintf("%2d %s = %s", i, op, ra.Brief())
			if noVerdict {
				line += fmt.Sprintf(" (not compared; %s: %s)", r.f.B, rb.Brief())
			}
			trace = append(trace, line)
		}
		if ra != rb && !noVerdict && r.f.OpIndex < 0 {
			r.f.OpIndex, r.f.Op, r.f.ResA, r.f.ResB = i, op, ra, rb
		}
	}
	r.trace = trace
	return nil
}

func (r *run) diff(what string, a, b Tree, nameA, nameB string) {
	d := Diff(a, b, nameA, nameB)
	if len(d) == 0 {
		return
	}
	max := r.cfg.MaxDiff
	if max <= 0 {
		max = 20
	}
	head := fmt.Sprintf("%s differ (%d):", what, len(d))
	if len(d) > max {
		d = append(d[:max:max], fmt.Sprintf("... and %d more", len(d)-max))
	}
	r.f.Diffs = append(r.f.Diffs, head+"\n  "+strings.Join(d, "\n  "))
}

// leaks reports overlay metadata xattrs that t shows, except those the
// operations set themselves: the kernel (6.7+) lets a user set
// "trusted.overlay.X" through a mount, stores it escaped in the upper
// ("trusted.overlay.overlay.X") and shows it back, for nested overlays.
func (r *run) leaks(t Tree, name, when string) {
	l := slices.DeleteFunc(OverlayXattrs(t, r.cfg.Namespace.String()), func(s string) bool {
		return r.userSet[s[strings.LastIndexByte(s, ' ')+1:]]
	})
	if len(l) > 0 {
		r.f.Diffs = append(r.f.Diffs, fmt.Sprintf("%s shows overlay metadata %s:\n  %s", name, when, strings.Join(l, "\n  ")))
	}
}

// withMounts mounts s1 with m1 and s2 with m2, runs fn on the targets and
// unmounts both, whatever happens.
func withMounts(ctx context.Context, m1 Mounter, s1 layer.Spec, m2 Mounter, s2 layer.Spec, fn func(t1, t2 string) error) (err error) {
	mount := func(m Mounter, s layer.Spec) (backend.Mount, error) {
		mt, err := m.Mount(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("mount with %s: %w", m.Name, err)
		}
		return mt, nil
	}
	unmount := func(m Mounter, mt backend.Mount) {
		if uerr := mt.Unmount(); uerr != nil {
			slog.Error("difftest: unmount", "mounter", m.Name, "target", mt.Target(), "err", uerr)
			if err == nil {
				err = fmt.Errorf("unmount %s (%s): %w", mt.Target(), m.Name, uerr)
			}
		}
	}
	mt1, err := mount(m1, s1)
	if err != nil {
		return err
	}
	defer unmount(m1, mt1)
	mt2, err := mount(m2, s2)
	if err != nil {
		return err
	}
	defer unmount(m2, mt2)
	return fn(mt1.Target(), mt2.Target())
}

// RunSeeds runs every seed with RunSeed and returns the errors of those
// that failed, stopping early after maxFail failures (0: never) or when
// a mount fails (that error comes last).
func RunSeeds(ctx context.Context, cfg Config, seeds []int64, m1, m2 Mounter, maxFail int) []error {
	var errs []error
	for _, s := range seeds {
		if ctx.Err() != nil {
			return append(errs, ctx.Err())
		}
		err := RunSeed(ctx, cfg, s, m1, m2)
		if err == nil {
			continue
		}
		errs = append(errs, err)
		if !errors.Is(err, ErrDiverged) || (maxFail > 0 && len(errs) >= maxFail) {
			break
		}
	}
	return errs
}

// Seeds returns n seeds starting at first.
func Seeds(first int64, n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = first + int64(i)
	}
	return s
}
