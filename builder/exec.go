package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/vagga"
)

// Exec is a command to run on top of layers: a command step of a build,
// or a shell in the state before a step. It mirrors the runner's Config
// without the volumes, which builds do not mount.
type Exec struct {
	Layers      []string // top first
	Writable    bool
	KeepChanges string // with Writable: the upper, kept as a layer here
	Env         []string
	Workdir     string
	BindWork    string // the project directory, bound at /work
	Args        []string
	Stdin       io.Reader
	Stdout      io.Writer
	Stderr      io.Writer
	// UIDs and GIDs are the container's id ranges (runner.Config's).
	UIDs, GIDs []idmap.Range
	// Volumes are what a build mounts for command steps: !CacheDirs
	// caches and !Build's temporary-mount.
	Volumes []runner.Volume
	// User runs the step as another user (!RunAs).
	User *runner.User
	// HostFiles are the host's resolv.conf and hosts, as vagga copies
	// them into the container while it builds.
	HostFiles []runner.HostFile
	// KeepTmp keeps the container's /tmp (builds) rather than a tmpfs.
	KeepTmp bool
	// IsolateNetwork gives the step a network of its own (!RunAs's
	// isolate-network).
	IsolateNetwork bool
}

// RunFunc runs x to completion. A command that exits non-zero or is
// killed is reported as an *ExitError.
type RunFunc func(ctx context.Context, x Exec) error

// runStep applies step s into upper, over the layers in r.keys: file
// steps directly, command steps through the runner.
func (b *Builder) runStep(ctx context.Context, c *vagga.Container, s step, r *Result, upper string) error {
	if isFileStep(s.step) {
		return b.runFileStep(ctx, c, s, r, upper)
	}
	if b.opts.Run == nil {
		return errors.New("no container runner to run commands with")
	}
	lowers, err := b.fit(ctx, c.Name, r.keys)
	if err != nil {
		return err
	}
	if len(lowers) == 0 {
		// One-layer builds keep the earlier steps in upper itself; a
		// mount still needs a lower layer.
		if empty, _ := treeEmpty(upper); empty {
			return errors.New("the container is empty: start it with !Tar or !Container before running commands")
		}
		if lowers, err = b.store.emptyLayer(); err != nil {
			return err
		}
	}
	x := Exec{Workdir: "/work", KeepTmp: true}
	switch st := s.step.(type) {
	case *vagga.ShStep:
		x.Args = []string{"/bin/sh", "-exc", st.Script}
	case *vagga.CmdStep:
		x.Args = st.Args
	case *vagga.RunAsStep:
		x.Args, x.Workdir = []string{"/bin/sh", "-exc", st.Script}, st.WorkDir
		x.User = &runner.User{UID: st.UserID, GID: st.GroupID, Groups: st.SupplementaryGIDs, ExternalUID: st.ExternalUserID}
		x.IsolateNetwork = st.IsolateNetwork
	}
	if x.Volumes, err = b.buildMounts(c, s.index); err != nil {
		return err
	}
	out := b.opts.Output
	if out == nil {
		out = io.Discard
	}
	var tail tailWriter
	if space().mode == ownIDs {
		out = io.MultiWriter(out, &tail)
	}
	x.Layers, x.Writable, x.KeepChanges, x.Env, x.BindWork = lowers, true, upper, sortedEnv(r.env), b.cfg.Dir
	x.Stdout, x.Stderr, x.UIDs, x.GIDs, x.HostFiles = out, out, c.UIDs, c.GIDs, buildHostFiles
	err = b.opts.Run(ctx, x)
	if err != nil && bytes.Contains(bytes.ToLower(tail.buf), []byte(unix.EINVAL.Error())) {
		// EINVAL, as a chown to an id the single-id map lacks fails
		// (strerror: "Invalid argument"): say why.
		err = fmt.Errorf("%w: the step ran with only your own uid and gid mapped, so a chown to another owner fails (\"Invalid argument\"): %v",
			err, space().why)
	}
	return err
}

// runFileStep applies the file step s into upper, over the layers in
// r.keys, where the owners of their files are mapped (work).
func (b *Builder) runFileStep(ctx context.Context, c *vagga.Container, s step, r *Result, upper string) error {
	msg, ok := newStepMsg(s.step)
	if !ok {
		return nil // !Env, !Depends, !Container: nothing to write
	}
	if t, ok := s.step.(*vagga.TarStep); ok {
		if err := checkTarSum(t, b.hashes); err != nil {
			return err
		}
	}
	o, err := ownersOf(c)
	if err != nil {
		return err
	}
	_, err = work(ctx, job{FileStep: &fileStepJob{Upper: upper, Lowers: b.layerDirs(r.keys), Project: b.cfg.Dir, Owners: o, Namespace: b.opts.Decision.Namespace, Step: msg}}, b.progressFunc())
	return err
}

// tailWriter keeps the last bytes written to it.
type tailWriter struct{ buf []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	const keep = 4 << 10
	t.buf = append(t.buf, p...)
	if len(t.buf) > keep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-keep:]...)
	}
	return len(p), nil
}

// stepError wraps the failure of step s with where it is and how to
// look at the state before it.
func (b *Builder) stepError(c *vagga.Container, s step, total int, err error) error {
	build := "ovl build"
	if b.opts.ConfigArg != "" {
		build += " -f " + shellWord(b.opts.ConfigArg)
	}
	hint := fmt.Sprintf("the steps before it are cached; to open a shell in the state just before it:\n    %s %s --shell-before-step %d", build, c.Name, s.index)
	if b.opts.OneLayer {
		hint = fmt.Sprintf("without --cache-each-step nothing of %q was kept; to open a shell in the state before it:\n    %s %s --cache-each-step --shell-before-step %d", c.Name, build, c.Name, s.index)
	}
	if isFileStep(s.step) && errors.Is(err, ErrPath) {
		hint = "fix the step in " + b.cfg.File + ", then build again"
	}
	return &StepError{Container: c.Name, Index: s.index, Total: total, Step: s.step.Summary(), Pos: s.step.Position(),
		Err: fmt.Errorf("%w: %w", ErrStepFailed, err), Hint: hint}
}

// shellWord quotes s for a shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./,:@%+=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// Shell builds container name up to the step before step number before
// (1-based) and runs /bin/sh in that state with stdin, stdout and stderr,
// writable, with the changes thrown away.
func (b *Builder) Shell(ctx context.Context, name string, before int, stdin io.Reader, stdout, stderr io.Writer) error {
	_, err := b.build(ctx, name, &shellRequest{before: before, stdin: stdin, stdout: stdout, stderr: stderr}, false)
	return err
}

func (b *Builder) shell(ctx context.Context, c *vagga.Container, steps []step, r *Result, sh *shellRequest) error {
	before := sh.before
	if before < 1 || before > len(steps)+1 {
		return fmt.Errorf("container %q has steps 1 to %d: --shell-before-step %d is not one of them", c.Name, len(steps), before)
	}
	if err := b.buildSteps(ctx, c, steps[:before-1], len(steps), r); err != nil {
		return err
	}
	if b.opts.Run == nil {
		return errors.New("no container runner to run a shell with")
	}
	lowers, err := b.fit(ctx, c.Name, r.keys)
	if err != nil {
		return err
	}
	vols, err := b.buildMounts(c, before)
	if err != nil {
		return err
	}
	return b.opts.Run(ctx, Exec{Layers: lowers, Writable: true, Env: sortedEnv(r.env), Workdir: "/work",
		BindWork: b.cfg.Dir, Args: []string{"/bin/sh"}, Volumes: vols, HostFiles: buildHostFiles, KeepTmp: true,
		Stdin: sh.stdin, Stdout: sh.stdout, Stderr: sh.stderr, UIDs: c.UIDs, GIDs: c.GIDs})
}

// buildHostFiles show the host's resolv.conf and hosts to command
// steps, read-only, where the container has them (the base layer does).
var buildHostFiles = []runner.HostFile{{Src: "/etc/resolv.conf", Dst: "/etc/resolv.conf"}, {Src: "/etc/hosts", Dst: "/etc/hosts"}}

// buildMounts lists what a command step before step number index of c
// has mounted: the caches of the !CacheDirs steps before it (the
// parents' included: vagga replays them), read-write, and the
// temporary-mount of c's own !Build steps before it, read-only.
func (b *Builder) buildMounts(c *vagga.Container, index int) ([]runner.Volume, error) {
	var out []runner.Volume
	seen := map[string]bool{}
	cache := func(s *vagga.CacheDirsStep) error {
		for _, d := range s.Dirs {
			if seen[d.Path] {
				continue
			}
			seen[d.Path] = true
			dir := filepath.Join(b.store.Dir, ".cache", d.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("!CacheDirs %s: %w", d.Name, err)
			}
			out = append(out, runner.Volume{Path: d.Path, Kind: runner.Bind, HostDir: dir, UID: -1, GID: -1})
		}
		return nil
	}
	var ancestors []*vagga.Container
	for p := c.Parent(); p != ""; p = b.cfg.Containers[p].Parent() {
		ancestors = append([]*vagga.Container{b.cfg.Containers[p]}, ancestors...)
	}
	for _, a := range ancestors {
		for _, s := range a.Setup {
			if cd, ok := s.(*vagga.CacheDirsStep); ok {
				if err := cache(cd); err != nil {
					return nil, err
				}
			}
		}
	}
	for i, s := range c.Setup {
		if i+1 >= index {
			break
		}
		switch s := s.(type) {
		case *vagga.CacheDirsStep:
			if err := cache(s); err != nil {
				return nil, err
			}
		case *vagga.BuildStep:
			if s.TemporaryMount != "" && !seen[s.TemporaryMount] {
				seen[s.TemporaryMount] = true
				src := filepath.Join(s.HostRoot, filepath.FromSlash(rel(s.Source)))
				out = append(out, runner.Volume{Path: s.TemporaryMount, Kind: runner.Bind, HostDir: src, ReadOnly: true, UID: -1, GID: -1})
			}
		}
	}
	return out, nil
}
