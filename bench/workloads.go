package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	// NoWarmup workloads start each repetition from scratch (a fresh
	// mount, a new file): a warm-up would only cost time. The lower tree
	// is in the page cache from the phases before.
	NoWarmup bool
	// NoCopy workloads leave out contestants that copy instead of
	// mounting (ovl copy): a first pass over a fresh copy measures nothing
	// a mount's cold caches would.
	NoCopy bool
	// Podman workloads run podman; they take contestants that can be
	// podman's storage (Contestant.Podman).
	Podman bool
	// NoCount workloads are left out of --requests: their FUSE mounts are
	// not the bench's own (podman's mount program makes them).
	NoCount bool

	Rep func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error)
}

// Applies reports whether c takes part in w.
func (w *Workload) Applies(c *Contestant) bool {
	if w.Podman {
		return c.Podman != ""
	}
	if c.SnapshotOnly {
		return w.Snapshot
	}
	if w.NoCopy && c.Copy {
		return false
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
				fmt.Sprintf("--size=%d", f.Config.BigSize), "--readonly"}
		}
		return "dd", []string{"if=" + p, "of=/dev/null", "bs=1M", "status=none"}
	}
	seqWrite := func(dir string) (string, []string) {
		p := filepath.Join(dir, "out.bin")
		if fio {
			return "fio", []string{"--name=seqwrite", "--filename=" + p, "--rw=write", "--bs=1M",
				fmt.Sprintf("--size=%d", f.Config.BigSize), "--end_fsync=1"}
		}
		return "dd", []string{"if=/dev/zero", "of=" + p, "bs=1M", fmt.Sprintf("count=%d", bigMB), "conv=fsync", "status=none"}
	}
	tool := "dd"
	if fio {
		tool = "fio"
	}

	return append([]Workload{
		{Name: "mount", Phase: "mount", Snapshot: true, NoWarmup: true,
			About: "time until the merged tree is usable: the mount, then a stat of its root answered (cp -a: the copy)",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, took, release, err := e.mountFresh(ctx, c, tree)
				if err != nil {
					return 0, err
				}
				// A FUSE program may return before its daemon answers
				// (fuse-overlayfs forks after mount(2)): the first stat
				// waits for the INIT reply and a GETATTR.
				t0 := time.Now()
				_, serr := os.Stat(m.Dir())
				took += time.Since(t0)
				if err := release(); err != nil {
					return 0, err
				}
				return took, serr
			}},
		{Name: "find+stat, first pass", Phase: "first", NoWarmup: true, NoCopy: true,
			About: "find -printf %s over the tree on a fresh mount: the host's page cache warm, the mount's caches cold",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				return e.firstPass(ctx, c, func(dir string) (time.Duration, error) {
					return timeCmd(ctx, dir, nil, "find", ".", "-printf", "%s\n")
				})
			}},
		{Name: "read every file, first pass", Phase: "first", NoWarmup: true, NoCopy: true,
			About: "open, read to the end and close every file on a fresh mount: the host's page cache warm, the mount's caches cold",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				return e.firstPass(ctx, c, func(dir string) (time.Duration, error) {
					return runWorker(ctx, "readall", dir)
				})
			}},
		{Name: "find+stat cold", Phase: "tree", Cold: true, NoWarmup: true,
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
		{Name: "find+stat, second pass", Phase: "tree",
			About: "find -printf %s over the tree again, on a mount that has done it before (the warm-up)",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				return timeCmd(ctx, m.Dir(), nil, "find", ".", "-printf", "%s\n")
			}},
		{Name: "read every file, second pass", Phase: "tree",
			About: "open, read to the end and close every file, on a mount that has done it before",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				return runWorker(ctx, "readall", m.Dir())
			}},
		{Name: "grep -r", Phase: "tree",
			About: "grep -r for a string no file has, after the reads",
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
		{Name: fmt.Sprintf("untar %d files", f.TarFiles), Phase: "tree", NoWarmup: true,
			About: "tar -xf of part of the tree into a new directory in the mount",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "tree", tree)
				if err != nil {
					return 0, err
				}
				// A new directory each time. The files stay until the
				// phase ends: removing them through a FUSE mount would
				// cost as much as the untar.
				dst := filepath.Join(m.Dir(), "untar-"+strconv.Itoa(rep+1))
				if err := os.Mkdir(dst, 0o755); err != nil {
					return 0, err
				}
				took, err := timeCmd(ctx, dst, nil, "tar", "-xf", e.Fix.Tarball)
				if err != nil {
					return 0, err
				}
				return took, sameSize(filepath.Join(e.Fix.Tree, e.Fix.TarLast), filepath.Join(dst, e.Fix.TarLast))
			}},
		{Name: fmt.Sprintf("copy-up: append to %d files", f.Config.AppendFiles), Phase: "fresh", NoWarmup: true,
			About: "append a line to lower files spread over the tree, fresh mount each time",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, _, release, err := e.mountFresh(ctx, c, tree)
				if err != nil {
					return 0, err
				}
				took, err := runWorker(ctx, "append", m.Dir(), e.Fix.AppendList)
				return took, errors.Join(err, release())
			}},
		{Name: "rm -rf lower subtree", Phase: "fresh", NoWarmup: true,
			About: "rm -rf of the tree's largest top-level directory, fresh mount each time",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, _, release, err := e.mountFresh(ctx, c, tree)
				if err != nil {
					return 0, err
				}
				took, err := timeCmd(ctx, m.Dir(), nil, "rm", "-rf", "--", e.Fix.RmSubtree)
				if _, serr := os.Lstat(filepath.Join(m.Dir(), e.Fix.RmSubtree)); err == nil && !errors.Is(serr, os.ErrNotExist) {
					err = fmt.Errorf("after rm -rf, %s is still there (%v)", e.Fix.RmSubtree, serr)
				}
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
				return timeIO(ctx, m.Dir(), prog, args...)
			}},
		{Name: "seq write " + sizeName, Phase: "io", NoWarmup: true,
			About: "sequential write of a new file with " + tool + ", 1 MiB blocks, fsync at the end",
			Rep: func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
				m, err := e.keptMount(ctx, c, "big", big)
				if err != nil {
					return 0, err
				}
				prog, args := seqWrite(m.Dir())
				took, err := timeIO(ctx, m.Dir(), prog, args...)
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
		{Name: "ovl run --writable ROOT -- true", Phase: "user", OvlOnly: true, Snapshot: true, NoWarmup: true,
			About: "start to exit of a writable run over the tree (cp -a: copy, chroot, remove)",
			Rep:   repRunWritable},
		{Name: "Snapshot volume start", Phase: "user", OvlOnly: true, Snapshot: true, NoWarmup: true,
			About: "run with the tree as a Snapshot volume (cp -a: tmpfs + copy, as vagga does)",
			Rep:   repSnapshot},
		{Name: "cached rebuild", Phase: "user", OvlOnly: true,
			About: "ovl build of an unchanged container whose base is the tree",
			Rep:   repCachedRebuild},
		{Name: "!Container child build", Phase: "user", OvlOnly: true, Snapshot: true, NoWarmup: true,
			About: "build a one-step child of the built base (cp -a: copy the parent, run the step)",
			Rep:   repChildBuild},
	}, append(ciWorkloads(), podmanWorkloads(f)...)...)
}

// firstPass times what a container pays when it starts: work on a fresh
// mount of the tree whose lower files are in the host's page cache (read
// once through the lower directory just before, untimed) while the
// mount's own caches (its dentries and inodes; a FUSE mount's page cache
// and attributes) are cold.
func (e *Env) firstPass(ctx context.Context, c *Contestant, work func(dir string) (time.Duration, error)) (time.Duration, error) {
	if _, err := runWorker(ctx, "readall", e.Fix.Tree); err != nil {
		return 0, fmt.Errorf("warm the lower tree: %w", err)
	}
	m, _, release, err := e.mountFresh(ctx, c, []string{e.Fix.Tree})
	if err != nil {
		return 0, err
	}
	took, err := work(m.Dir())
	return took, errors.Join(err, release())
}

// timeIO runs fio, taking the job's run time from its JSON report (fio
// itself takes ~0.3 s to start, which would swamp the I/O), or dd, timed
// from outside.
func timeIO(ctx context.Context, dir, prog string, args ...string) (time.Duration, error) {
	if prog != "fio" {
		return timeCmd(ctx, dir, nil, prog, args...)
	}
	cmd := exec.CommandContext(ctx, prog, append(args, "--output-format=json")...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("fio %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 3))
	}
	return fioRuntime(out)
}

// fioRuntime reads the run time of the first job of a fio JSON report
// (job_runtime, in milliseconds: the I/O and, with end_fsync, the sync).
func fioRuntime(report []byte) (time.Duration, error) {
	var r struct {
		Jobs []struct {
			Error      int   `json:"error"`
			JobRuntime int64 `json:"job_runtime"`
		} `json:"jobs"`
	}
	// fio may print notes before the JSON.
	if i := bytes.IndexByte(report, '{'); i > 0 {
		report = report[i:]
	}
	if err := json.Unmarshal(report, &r); err != nil {
		return 0, fmt.Errorf("fio's JSON report: %w", err)
	}
	if len(r.Jobs) == 0 || r.Jobs[0].Error != 0 {
		return 0, fmt.Errorf("fio's JSON report has no successful job: %s", shorten(string(report), 200))
	}
	return time.Duration(r.Jobs[0].JobRuntime) * time.Millisecond, nil
}

// sameSize checks that got is a regular file as large as want: a cheap
// sign that a workload's writes really arrived.
func sameSize(want, got string) error {
	w, err := os.Lstat(want)
	if err != nil {
		return err
	}
	g, err := os.Lstat(got)
	if err != nil {
		return fmt.Errorf("after the workload: %w", err)
	}
	if !g.Mode().IsRegular() || g.Size() != w.Size() {
		return fmt.Errorf("after the workload: %s is %v, %d bytes; want a regular file of %d bytes", got, g.Mode(), g.Size(), w.Size())
	}
	return nil
}

// FioInstalled reports whether fio is on PATH.
func FioInstalled() bool {
	_, err := exec.LookPath("fio")
	return err == nil
}
