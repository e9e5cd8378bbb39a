package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// A Workload is one measured operation. Rep does one repetition for one
// contestant and returns the time of the measured part only; set-up and
// clean-up around it are not timed.
type Workload struct {
	Name  string
	About string
	// Phase groups workloads that share kept mounts; the mounts are
	// released when the phase ends.
	Phase string
	// Snapshot marks workloads where a plain copy is today's answer, so
	// cp -a takes part.
	Snapshot bool
	// OvlOnly marks the user-facing workloads that go through the ovl
	// binary: peers other than cp -a have no equivalent.
	OvlOnly bool
	// Cold workloads drop the kernel's caches first, which needs root.
	Cold bool

	Rep func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error)
}

// Applies reports whether c takes part in w.
func (w *Workload) Applies(c *Contestant) bool {
	if c.SnapshotOnly {
		return w.Snapshot
	}
	return !(w.OvlOnly && c.Peer)
}

// grepPattern is a string no file of a sane tree contains, so grep reads
// every file to the end.
const grepPattern = "ovl-bench: no file contains this line 7f3a9c"

// Workloads returns every workload, in the order they run, for fixture f.
// fio, when installed, does the sequential I/O; dd otherwise.
func Workloads(f *Fixture, fio bool) []Workload {
	tree := []string{f.Tree}
	big := []string{f.Big}
	bigMB := f.Config.BigSize >> 20
	sizeName := fmt.Sprintf("%d MiB", bigMB)
	if bigMB >= 1024 && bigMB%1024 == 0 {
		sizeName = fmt.Sprintf("%d GiB", bigMB/1024)
	}
	seqRead := func(dir string) (string, []string) {
		p := filepath.Join(dir, "big.bin")
		if fio {
			return "fio", []string{"--name=seqread", "--filename=" + p, "--rw=read", "--bs=1M",
				fmt.Sprintf("--size=%d", f.Config.BigSize), "--readonly", "--output=/dev/null"}
		}
		return "dd", []string{"if=" + p, "of=/dev/null", "bs=1M", "status=none"}
	}
	seqWrite := func(dir string) (string, []string) {
		p := filepath.Join(dir, "out.bin")
		if fio {
			return "fio", []string{"--name=seqwrite", "--filename=" + p, "--rw=write", "--bs=1M",
				fmt.Sprintf("--size=%d", f.Config.BigSize), "--end_fsync=1", "--output=/dev/null"}
		}
		return "dd", []string{"if=/dev/zero", "of=" + p, "bs=1M", fmt.Sprintf("count=%d", bigMB), "conv=fsync", "status=none"}
	}
	tool := "dd"
	if fio {
		tool = "fio"
	}

	return []Workload{
		{Name: "mount", Phase: "mount", Snapshot: true,
			About: "time until the merged tree is usable (cp -a: the copy)",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				_, took, release, err := e.mountFresh(ctx, c, tree)
				if err != nil {
					return 0, err
				}
				return took, release()
			}},
		{Name: "find+stat cold", Phase: "tree", Cold: true,
			About: "find -printf %s over the tree after dropping caches",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				if err := dropCaches(); err != nil {
					return 0, err
				}
				return timeCmd(ctx, m.Dir(), nil, "find", ".", "-printf", "%s\n")
			}},
		{Name: "find+stat warm", Phase: "tree",
			About: "find -printf %s over the tree, caches warm",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				return timeCmd(ctx, m.Dir(), nil, "find", ".", "-printf", "%s\n")
			}},
		{Name: "read all files", Phase: "tree",
			About: "open, read to the end and close every file, warm",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				return runWorker(ctx, "readall", m.Dir())
			}},
		{Name: "grep -r", Phase: "tree",
			About: "grep -r for a string no file has, warm",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				return timeCmd(ctx, m.Dir(), []int{1}, "grep", "-r", "-l", "-F", grepPattern, ".")
			}},
		{Name: "create/stat/unlink storm", Phase: "tree",
			About: fmt.Sprintf("create %d small files in a new directory, stat, unlink them", f.Config.StormFiles),
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				return runWorker(ctx, "storm", filepath.Join(m.Dir(), "storm-"+strconv.Itoa(rep+1)), strconv.Itoa(e.Fix.Config.StormFiles))
			}},
		{Name: fmt.Sprintf("untar %d files", f.TarFiles), Phase: "tree",
			About: "tar -xf of part of the tree into a new directory in the mount",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				dst := filepath.Join(m.Dir(), "untar-"+strconv.Itoa(rep+1))
				if err := os.Mkdir(dst, 0o755); err != nil {
					return 0, err
				}
				took, err := timeCmd(ctx, dst, nil, "tar", "-xf", e.Fix.Tarball)
				if rerr := os.RemoveAll(dst); err == nil && rerr != nil {
					err = fmt.Errorf("remove the untarred files: %w", rerr)
				}
				return took, err
			}},
		{Name: fmt.Sprintf("copy-up: append to %d files", f.Config.AppendFiles), Phase: "fresh",
			About: "append a line to lower files spread over the tree, fresh mount each time",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, _, release, err := e.mountFresh(ctx, c, tree)
				if err != nil {
					return 0, err
				}
				took, err := runWorker(ctx, "append", m.Dir(), e.Fix.AppendList)
				return took, errors.Join(err, release())
			}},
		{Name: "rm -rf lower subtree", Phase: "fresh",
			About: "rm -rf of the tree's largest top-level directory, fresh mount each time",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, _, release, err := e.mountFresh(ctx, c, tree)
				if err != nil {
					return 0, err
				}
				took, err := timeCmd(ctx, m.Dir(), nil, "rm", "-rf", "--", e.Fix.RmSubtree)
				return took, errors.Join(err, release())
			}},
		{Name: "seq read " + sizeName, Phase: "io",
			About: "sequential read of one lower file with " + tool + ", 1 MiB blocks, warm",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "big", big)
				if err != nil {
					return 0, err
				}
				prog, args := seqRead(m.Dir())
				return timeCmd(ctx, m.Dir(), nil, prog, args...)
			}},
		{Name: "seq write " + sizeName, Phase: "io",
			About: "sequential write of a new file with " + tool + ", 1 MiB blocks, fsync at the end",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "big", big)
				if err != nil {
					return 0, err
				}
				prog, args := seqWrite(m.Dir())
				took, err := timeCmd(ctx, m.Dir(), nil, prog, args...)
				if rerr := os.Remove(filepath.Join(m.Dir(), "out.bin")); err == nil && rerr != nil {
					err = rerr
				}
				return took, err
			}},
		{Name: fmt.Sprintf("%d-layer lookup cold", len(f.Layers)), Phase: "deep", Cold: true,
			About: "lstat each layer's files and as many missing names in a directory all layers share, caches dropped",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "deep", e.Fix.Layers)
				if err != nil {
					return 0, err
				}
				if err := dropCaches(); err != nil {
					return 0, err
				}
				return runWorker(ctx, "stat", m.Dir(), e.Fix.LookupList)
			}},
		{Name: "ovl run --writable ROOT -- true", Phase: "user", OvlOnly: true, Snapshot: true,
			About: "start to exit of a writable run over the tree (cp -a: copy, chroot, remove)",
			Rep:   repRunWritable},
		{Name: "Snapshot volume start", Phase: "user", OvlOnly: true, Snapshot: true,
			About: "run with the tree as a Snapshot volume (cp -a: tmpfs + copy, as vagga does)",
			Rep:   repSnapshot},
		{Name: "cached rebuild", Phase: "user", OvlOnly: true,
			About: "ovl build of an unchanged container whose base is the tree",
			Rep:   repCachedRebuild},
		{Name: "!Container child build", Phase: "user", OvlOnly: true, Snapshot: true,
			About: "build a one-step child of the built base (cp -a: copy the parent, run the step)",
			Rep:   repChildBuild},
	}
}

// FioInstalled reports whether fio is on PATH.
func FioInstalled() bool {
	_, err := exec.LookPath("fio")
	return err == nil
}
