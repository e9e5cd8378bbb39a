package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The user-facing workloads go through the ovl binary, as a user would.

// ovlVerb checks once that the ovl binary has verb, and whether it takes
// --backend; it returns why not when it cannot be used.
func (e *Env) ovlVerb(verb string) (backendFlag bool, err error) {
	if e.verbs == nil {
		e.verbs = map[string]verbInfo{}
	}
	if v, ok := e.verbs[verb]; ok {
		return v.backendFlag, v.err
	}
	v := verbInfo{}
	switch {
	case e.Ovl == "":
		v.err = errors.New("no ovl binary (build it with `make build`, or give --ovl)")
	case e.Fix.Busybox == "":
		_, v.err = findBusybox()
	default:
		out, err := exec.Command(e.Ovl, verb, "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ovl "+verb) {
			v.err = fmt.Errorf("`ovl %s` is not in %s yet: %s", verb, e.Ovl, lastLines(string(out), 1))
		}
		v.backendFlag = strings.Contains(string(out), "--backend")
	}
	e.verbs[verb] = v
	return v.backendFlag, v.err
}

type verbInfo struct {
	backendFlag bool
	err         error
}

// ovl runs the ovl binary with c's backend and returns its wall time.
func (e *Env) ovl(ctx context.Context, c *Contestant, dir, verb string, args ...string) (time.Duration, error) {
	flag, err := e.ovlVerb(verb)
	if err != nil {
		return 0, err
	}
	full := []string{verb}
	if flag {
		full = append(full, "--backend", c.Backend)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, e.Ovl, full...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "OVL_BACKEND="+c.Backend), c.Env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err = cmd.Run()
	took := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("ovl %s: %w: %s", strings.Join(full, " "), err, lastLines(out.String(), 3))
	}
	return took, nil
}

// snapshotSize is the tmpfs size of the Snapshot volume: room for the tree.
func (e *Env) snapshotSize() string {
	return fmt.Sprintf("%dM", e.Fix.Bytes>>20+256)
}

func repRunWritable(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
	if !c.SnapshotOnly {
		return e.ovl(ctx, c, e.scratch, "run", "--writable", e.Fix.Root, "--", "/bin/true")
	}
	return e.copyAndChroot(ctx, c, "run", true, "/bin/true")
}

// copyAndChroot is what vagga does without overlay, timed: copy the
// container root (cp -a) into a scratch directory named name, run args
// there with chroot, and, when discard is set (a writable run), remove
// the copy as part of the cost.
func (e *Env) copyAndChroot(ctx context.Context, c *Contestant, name string, discard bool, args ...string) (time.Duration, error) {
	if e.Fix.Busybox == "" {
		return 0, errors.New("no container root: busybox-static is not installed")
	}
	d, err := e.scratchDir(c, name)
	if err != nil {
		return 0, err
	}
	defer removeAll(d)
	t0 := time.Now()
	if _, err := timeCmd(ctx, "/", nil, "cp", "-a", e.Fix.Root+"/.", d+"/"); err != nil {
		return 0, err
	}
	if _, err := timeCmd(ctx, "/", nil, "chroot", append([]string{d}, args...)...); err != nil {
		return 0, err
	}
	if discard {
		if err := os.RemoveAll(d); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

func repSnapshot(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
	if !c.SnapshotOnly {
		return e.ovl(ctx, c, e.scratch, "run", "--volume", "/data=snapshot,size="+e.snapshotSize(), e.Fix.Root, "--", "/bin/true")
	}
	if e.Fix.Busybox == "" {
		return 0, errors.New("no container root: busybox-static is not installed")
	}
	if !e.Root {
		return 0, errors.New("mounting the tmpfs of a Snapshot volume needs root")
	}
	d, err := e.scratchDir(c, "snap")
	if err != nil {
		return 0, err
	}
	defer os.Remove(d)
	t0 := time.Now()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size="+e.snapshotSize()); err != nil {
		return 0, fmt.Errorf("mount tmpfs on %s: %w", d, err)
	}
	umount := e.Jan.Add("unmount "+d, func() error { return unmountDir(d) })
	if _, err := timeCmd(ctx, "/", nil, "cp", "-a", e.Fix.Tree+"/.", d+"/"); err != nil {
		umount()
		return 0, err
	}
	if _, err := timeCmd(ctx, "/", nil, "chroot", e.Fix.Root, "/bin/true"); err != nil {
		umount()
		return 0, err
	}
	if err := umount(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// project returns c's build project: a directory with base.tar (the
// container root as a tarball) and a vagga.yaml of two containers, base
// (the tarball) and child (base plus one step whose text is marker, so
// that each marker is a new step to build).
func (e *Env) project(c *Contestant, marker string) (string, error) {
	d := filepath.Join(e.scratch, c.Slug()+"-project")
	if _, err := os.Stat(filepath.Join(d, "base.tar")); err != nil {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
		if err := os.Link(e.Fix.RootTar, filepath.Join(d, "base.tar")); err != nil {
			return "", err
		}
	}
	cfg := fmt.Sprintf(`# Written by ovl-bench.
containers:
  base:
    setup:
    - !Tar
      url: base.tar
  child:
    setup:
    - !Container base
    - !Sh "echo %s > /marker"
`, marker)
	return d, os.WriteFile(filepath.Join(d, "vagga.yaml"), []byte(cfg), 0o644)
}

func repCachedRebuild(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
	if _, err := e.ovlVerb("build"); err != nil {
		return 0, err
	}
	d, err := e.project(c, "cached")
	if err != nil {
		return 0, err
	}
	return e.ovl(ctx, c, d, "build", "base")
}

func repChildBuild(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
	e.seq++
	marker := fmt.Sprintf("child-%d", e.seq)
	if !c.SnapshotOnly {
		if _, err := e.ovlVerb("build"); err != nil {
			return 0, err
		}
		d, err := e.project(c, marker)
		if err != nil {
			return 0, err
		}
		// The parent is built first, untimed: a no-op when the cached
		// rebuild workload ran before.
		if _, err := e.ovl(ctx, c, d, "build", "base"); err != nil {
			return 0, err
		}
		return e.ovl(ctx, c, d, "build", "child")
	}
	return e.copyAndChroot(ctx, c, "child", false, "/bin/sh", "-c", "echo "+marker+" > /marker")
}
