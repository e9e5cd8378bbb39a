package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/internal/podmantest"
)

// The podman workloads time what a container engine pays with each way
// of mounting its layers: Debian's podman, rootful, with overlay storage
// mounted by the kernel's overlay driver, or by a mount_program
// (fuse-overlayfs, or ovl, whose drop-in mode is its FUSE backend). Each
// contestant gets a podman of its own under the scratch directory, set up
// by internal/podmantest, with the fixture's container root imported as
// the image, untimed. Every podman command is bounded in time.

// podmanTimeout bounds every podman command: a hung mount program fails
// the workload instead of hanging the bench. podmanBuildTimeout bounds a
// build: over the 15k-file tree, on a loaded machine (load 20), ovl fuse's
// took more than 3 minutes.
const (
	podmanTimeout      = 3 * time.Minute
	podmanBuildTimeout = 10 * time.Minute
)

// podmanImage is the image the fixture's root is imported as.
const podmanImage = "localhost/ovl-bench"

// How a contestant mounts podman's layers (Contestant.Podman).
const (
	podmanKernel        = "kernel"         // podman's own overlay driver
	podmanFuseOverlayfs = "fuse-overlayfs" // mount_program = fuse-overlayfs
	podmanOvl           = "ovl"            // mount_program = ovl-fuse, or ovl (the drop-in mode: the FUSE backend)
)

// podmanWorkloads are the container engine's rows. Each podman run is a
// new container, so a fresh mount of the image: its caches cold.
func podmanWorkloads(f *Fixture) []Workload {
	run := func(args ...string) func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
		return func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
			p, err := e.podman(ctx, c)
			if err != nil {
				return 0, err
			}
			return p.timed(ctx, append([]string{"run", "--rm", "--pull=never", podmanImage}, args...)...)
		}
	}
	return []Workload{
		{Name: "podman run --rm IMAGE true", Phase: "podman", Podman: true, NoCount: true,
			About: "start and remove a container of the tree's image (busybox + the tree under /data)",
			Rep:   run("true")},
		{Name: "podman: find / -xdev in a container", Phase: "podman", Podman: true, NoCount: true, NoWarmup: true,
			About: "busybox find over the container's root (readdir and lstat of every name), container start included",
			Rep:   run("sh", "-c", "find / -xdev >/dev/null")},
		{Name: fmt.Sprintf("podman: cat %d MB in a container", f.Bytes>>20), Phase: "podman", Podman: true, NoCount: true, NoWarmup: true,
			About: "cat of every file under /data in a container, container start included",
			Rep:   run("sh", "-c", "find /data -type f -exec cat {} + >/dev/null")},
		{Name: "podman build, 5 steps", Phase: "podman", Podman: true, NoCount: true, NoWarmup: true,
			About: "podman build --no-cache of 5 RUN steps on the image (appends to lower files, rm -rf of a lower directory, find); podman commits each step",
			Rep:   repPodmanBuild},
	}
}

// podmanContainerfile is the build: every step a layer podman commits.
// rm names the lower directory its third step removes.
func podmanContainerfile(f *Fixture, rm string) string {
	appends := min(500, f.Config.AppendFiles)
	return fmt.Sprintf(`FROM %s
RUN mkdir /app && echo one > /app/1
RUN find /data -type f | head -n %d | while read f; do echo x >> "$f"; done
RUN rm -rf '/data/%s'
RUN find / -xdev | wc -l > /app/count
RUN cat /app/count && echo done > /app/done
`, podmanImage, appends, rm)
}

// subtreeNear returns the directory of tree (relative, two levels deep
// at most) whose file count is closest to n: what the build removes, a
// fixed share of the tree rather than its largest part.
func subtreeNear(tree string, n int) (string, error) {
	counts := map[string]int{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		parts := strings.Split(rel, "/")
		for i := 1; i < len(parts) && i <= 2; i++ {
			counts[strings.Join(parts[:i], "/")]++
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	best, bestDiff := "", -1
	for dir, c := range counts {
		diff := max(c-n, n-c)
		if bestDiff < 0 || diff < bestDiff || (diff == bestDiff && dir < best) {
			best, bestDiff = dir, diff
		}
	}
	if best == "" {
		return "", fmt.Errorf("tree %s has no subdirectory with files for the podman build to remove", tree)
	}
	return best, nil
}

func repPodmanBuild(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
	p, err := e.podman(ctx, c)
	if err != nil {
		return 0, err
	}
	rm, err := subtreeNear(e.Fix.Tree, e.Fix.Config.AppendFiles/2)
	if err != nil {
		return 0, err
	}
	cf := filepath.Join(p.dir, "Containerfile")
	if err := os.WriteFile(cf, []byte(podmanContainerfile(e.Fix, rm)), 0o644); err != nil {
		return 0, err
	}
	tag := podmanImage + "-built"
	took, err := p.timedFor(ctx, podmanBuildTimeout, "build", "--no-cache", "--layers", "--pull=never", "-q", "-t", tag, "-f", cf, p.dir)
	if err != nil {
		return 0, err
	}
	if _, err := p.run(ctx, "rmi", "--force", tag); err != nil {
		return 0, err
	}
	return took, nil
}

// podmanHome is one contestant's podman: its configuration, storage and
// the environment that points podman at them.
type podmanHome struct {
	name string
	dir  string
	env  []string
}

// podman returns c's podman with the image imported, setting it up at the
// first call; it lives until the phase ends.
func (e *Env) podman(ctx context.Context, c *Contestant) (*podmanHome, error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, fmt.Errorf("podman %w (Debian package podman; scripts/deps.sh bench installs it)", ErrMissing)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("runc %w (Debian package runc)", ErrMissing)
	}
	if !e.Root {
		return nil, errors.New("the podman workloads run rootful podman: run the bench as root")
	}
	k := keptKey{c, "podman"}
	if km, ok := e.kept[k]; ok {
		return km.m.(*podmanHome), nil
	}
	prog := ""
	switch c.Podman {
	case podmanKernel:
	case podmanFuseOverlayfs:
		p, err := exec.LookPath("fuse-overlayfs")
		if err != nil {
			return nil, fmt.Errorf("fuse-overlayfs %w (Debian package %s)", ErrMissing, debianFuseOverlay)
		}
		prog = p
	case podmanOvl:
		if e.Ovl == "" {
			return nil, errors.New("no ovl binary (build it with `make build`, or give --ovl)")
		}
	default:
		return nil, fmt.Errorf("%s cannot be podman's storage", c.Name)
	}
	// A short directory: conmon's socket paths under runroot grow past
	// the 108 bytes a socket address holds from ~45 characters here, and
	// podman then waits out a 20 s timeout at every container's exit.
	e.seq++
	d := filepath.Join(e.scratch, fmt.Sprintf("pm%d", e.seq))
	if len(d) > podmantest.MaxDir {
		return nil, fmt.Errorf("podman's directory %s is longer than %d characters, which makes conmon's socket paths too long: give a shorter --workdir", d, podmantest.MaxDir)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	if c.Podman == podmanOvl {
		// ovl run as a mount program is its drop-in mode, which is
		// always the FUSE backend: ovl-fuse beside ovl takes the same
		// command line and starts in a fraction of ovl's time (what
		// users should give podman), else ovl itself.
		prog = FUSEDaemon(e.Ovl)
	}
	p, err := newPodmanHome(c.Name, d, prog)
	if err != nil {
		return nil, err
	}
	release := e.Jan.Add("reset podman in "+d, p.Unmount)
	e.kept[k] = keptMount{p, release}
	if _, err := p.run(ctx, "import", e.Fix.RootTar, podmanImage); err != nil {
		return nil, err
	}
	return p, nil
}

// newPodmanHome sets podman up under dir; mountProgram "" is the
// kernel's overlay driver.
func newPodmanHome(name, dir, mountProgram string) (*podmanHome, error) {
	env, err := podmantest.WriteConfig(dir, mountProgram)
	if err != nil {
		return nil, err
	}
	return &podmanHome{name: name, dir: dir, env: append(os.Environ(), env...)}, nil
}

// run runs podman with args, bounded by podmanTimeout, and returns its
// combined output.
func (p *podmanHome) run(ctx context.Context, args ...string) (string, error) {
	return p.runFor(ctx, podmanTimeout, args...)
}

// runFor is run bounded by limit.
func (p *podmanHome) runFor(ctx context.Context, limit time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", limit, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, lastLines(string(out), 3))
	}
	return string(out), nil
}

// timed runs podman with args and returns its wall time.
func (p *podmanHome) timed(ctx context.Context, args ...string) (time.Duration, error) {
	return p.timedFor(ctx, podmanTimeout, args...)
}

// timedFor is timed bounded by limit.
func (p *podmanHome) timedFor(ctx context.Context, limit time.Duration, args ...string) (time.Duration, error) {
	t0 := time.Now()
	if _, err := p.runFor(ctx, limit, args...); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// Dir is the podman's directory (podmanHome is kept as a phase's mount).
func (p *podmanHome) Dir() string { return p.dir }

// Unmount removes every container and image, detaches what podman or its
// mount program left mounted under the directory, and removes it.
func (p *podmanHome) Unmount() error {
	ctx := context.Background()
	var errs []error
	if _, err := p.run(ctx, "rm", "--all", "--force", "--time", "0"); err != nil {
		errs = append(errs, err)
	}
	if _, err := p.run(ctx, "system", "reset", "--force"); err != nil {
		errs = append(errs, err)
	}
	if mounts, err := mountinfo.Read(); err == nil {
		for i := len(mounts) - 1; i >= 0; i-- {
			if m := mounts[i].MountPoint; strings.HasPrefix(m, p.dir+"/") {
				unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	}
	if err := removeAll(p.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
