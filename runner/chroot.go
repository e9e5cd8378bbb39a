package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/selector"
)

// This file runs a command where no namespace can be made: a seccomp
// filter forbids them (Docker's default profile does, for a container
// without CAP_SYS_ADMIN), or user namespaces are off. The copy backend
// runs everywhere: the root is copied into the run's transient
// directory, volumes are applied to the copy, and the command enters it
// with chroot(2) (CAP_SYS_CHROOT, in Docker's and podman's default set).
// Without a mount namespace nothing is mounted: no /proc, /sys or /dev
// of the container's own (device nodes are made in the copy's /dev where
// CAP_MKNOD allows), no bind volumes and no project at /work, no size
// limits on snapshot and tmpfs volumes, and a "read-only" run works on a
// copy that is thrown away; the command is not alone in a pid namespace.

// ErrNoIsolation reports a run that cannot start because nothing here
// can isolate its command: no namespace can be made, and chroot is not
// allowed either (or the run needs a mount, which chroot cannot give).
var ErrNoIsolation = errors.New("cannot isolate the command here")

// noNamespaces is why a decision isolated by chroot (or not at all)
// makes no namespaces: what the selector's probe was refused.
func noNamespaces(d selector.Decision) error {
	if d.NoNamespace == "" {
		return errors.New("the probe found that no namespace can be made here (see ovl check)")
	}
	return fmt.Errorf("a new user namespace: %s", d.NoNamespace)
}

// nsRefused reports whether err, from starting a process in new
// namespaces, says the namespaces were refused rather than something
// else failing.
func nsRefused(err error) bool {
	for _, e := range []error{unix.EPERM, unix.EINVAL, unix.ENOSPC, unix.EUSERS, unix.ENOSYS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// refusal is " (what refused it)" for an error of starting a process in
// new namespaces, "" when nothing more can be said.
func refusal(err error) string {
	if why := selector.NamespaceRefusal(err); why != "" {
		return " (" + why + ")"
	}
	return ""
}

// chrootSeq tells apart the transient directories of the chroot runs of
// one process.
var chrootSeq atomic.Int64

// chrootDevices are the device nodes a chroot run gets in the copy's
// /dev, where it has none and CAP_MKNOD allows: what a container's
// devices rules let through.
var chrootDevices = []struct {
	name         string
	major, minor uint32
}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

// runChroot runs cfg without namespaces, on the copy backend: why says
// why no namespace could be made.
func runChroot(ctx context.Context, cfg Config, tdir, name string, why error) (Result, error) {
	res := Result{ExitCode: 125, Backend: backend.Copy}
	if err := chrootAllowed(cfg, why); err != nil {
		return res, err
	}
	dir := filepath.Join(tdir, fmt.Sprintf("%s-%d.%d", name, chrootSeq.Add(1), os.Getpid()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return res, fmt.Errorf("transient directory: %w", err)
	}
	defer func() {
		if err := removeTransient(dir); err != nil {
			slog.Warn("transient directory left behind; `ovl clean --transient` removes it", "dir", dir, "err", err)
		}
	}()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return res, err
	}
	spec := layer.Spec{Lowers: cfg.Layers, Target: root, Namespace: cfg.Decision.Namespace}
	if cfg.KeepChanges != "" {
		spec.Upper, spec.Work = cfg.KeepChanges, keepWorkDir(cfg.KeepChanges, dir)
		if err := os.MkdirAll(spec.Upper, 0o755); err != nil {
			return res, fmt.Errorf("keep-changes: %w", err)
		}
		if err := os.Mkdir(spec.Work, 0o700); err != nil {
			return res, fmt.Errorf("keep-changes work directory: %w", err)
		}
		defer layer.RemoveAll(spec.Work)
	}
	m, err := copyback.New().Mount(ctx, spec)
	if err != nil {
		return res, fmt.Errorf("copy backend: copy %v to %s: %w", spec.Lowers, root, err)
	}
	mount := m.(*copyback.Mount)
	keep := cfg.KeepChanges != ""
	made, err := chrootSetup(root, cfg.Volumes)
	if err == nil {
		res, err = chrootExec(ctx, cfg, root)
	}
	for _, p := range made {
		os.Remove(p)
	}
	var endErr error
	if keep && err == nil {
		endErr = mount.Unmount()
	} else {
		endErr = mount.Discard()
	}
	if err != nil {
		return res, err
	}
	if endErr != nil {
		return Result{ExitCode: 125, Backend: backend.Copy}, endErr
	}
	return res, nil
}

// chrootAllowed says why cfg cannot run with chroot here, or nil.
func chrootAllowed(cfg Config, why error) error {
	if cfg.Decision.Backend != backend.Copy {
		return fmt.Errorf("%w: the %s backend mounts in namespaces, and none can be made here: %v%s; the copy backend runs without them (--backend copy)",
			ErrNoIsolation, cfg.Decision.Backend, why, refusal(why))
	}
	if !userns.HasCap(unix.CAP_SYS_CHROOT) {
		return fmt.Errorf("%w: no namespace can be made (%v%s), and chroot, the way without them, needs CAP_SYS_CHROOT, which this process (uid %d) lacks: run as root with CAP_SYS_CHROOT (in Docker's and podman's default set), or allow user namespaces",
			ErrNoIsolation, why, refusal(why), os.Geteuid())
	}
	if cfg.BindWork != "" {
		return fmt.Errorf("%w: the project %s at /work needs a bind mount, and no namespace can be made for one here (%v%s)",
			ErrNoIsolation, cfg.BindWork, why, refusal(why))
	}
	if cfg.IsolateNetwork {
		return fmt.Errorf("%w: isolate-network needs a network namespace, and no namespace can be made here (%v%s)",
			ErrNoIsolation, why, refusal(why))
	}
	if len(cfg.HostFiles) > 0 {
		return fmt.Errorf("%w: %s is shown from the host by a bind mount, and no namespace can be made for one here (%v%s)",
			ErrNoIsolation, cfg.HostFiles[0].Dst, why, refusal(why))
	}
	if cfg.User != nil && cfg.User.ExternalUID != -1 {
		return fmt.Errorf("%w: external-user-id needs a user namespace of its own, and none can be made here (%v%s)",
			ErrNoIsolation, why, refusal(why))
	}
	for _, v := range cfg.Volumes {
		if v.Kind == Bind {
			return fmt.Errorf("%w: volume %s binds %s, which needs a mount, and no namespace can be made for one here (%v%s)",
				ErrNoIsolation, v.Path, v.HostDir, why, refusal(why))
		}
	}
	return nil
}

// chrootSetup applies the volumes to the copy at root (a snapshot is
// the copy's own directory, or the contents of From; a tmpfs is an empty
// directory), with their owners and modes, and makes the device nodes
// of /dev where it has none. It returns the nodes made, to remove before
// the copy is kept or thrown away.
func chrootSetup(root string, vols []Volume) ([]string, error) {
	for _, v := range vols {
		mp, err := resolveInRoot(root, v.Path, true)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Path, err)
		}
		if v.Kind == Tmpfs || v.From != "" {
			if err := layer.EmptyDir(mp); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Path, err)
			}
		}
		if v.From != "" {
			if err := layer.Flatten(context.Background(), []string{v.From}, mp); err != nil {
				return nil, fmt.Errorf("volume %s: copy %s: %w", v.Path, v.From, err)
			}
		}
		if v.UID >= 0 || v.GID >= 0 {
			if err := os.Lchown(mp, v.UID, v.GID); err != nil {
				return nil, fmt.Errorf("volume %s: owner: %w", v.Path, err)
			}
		}
	}
	dev, err := resolveInRoot(root, "/dev", true)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(dev); err != nil || len(entries) > 0 {
		return nil, err
	}
	var made []string
	for _, d := range chrootDevices {
		p := filepath.Join(dev, d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			slog.Debug("chroot run: no device node", "node", p, "err", err)
			continue
		}
		unix.Chmod(p, 0o666) // past the umask
		made = append(made, p)
	}
	return made, nil
}

// chrootExec runs the exec stage, which chroots into root and becomes
// the command, and waits for it, forwarding signals.
func chrootExec(ctx context.Context, cfg Config, root string) (Result, error) {
	res := Result{ExitCode: 125, Backend: backend.Copy}
	data, err := json.Marshal(execPlan{Root: root, Workdir: cfg.Workdir, Env: cfg.Env, Args: cfg.Args, Chroot: true})
	if err != nil {
		return res, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		return res, err
	}
	defer repR.Close()
	cmd := reexec.Command(execEntry)
	cmd.Env = append(initEnv(cmd.Env), envExec+"="+string(data))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = []*os.File{repW}
	runtime.LockOSThread() // Pdeathsig: the thread that started it
	defer runtime.UnlockOSThread()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	err = cmd.Start()
	repW.Close()
	if err != nil {
		return res, fmt.Errorf("start the command: %w", err)
	}
	var rep []byte
	repDone := make(chan struct{})
	go func() { rep, _ = io.ReadAll(repR); close(repDone) }()
	waitErr := waitForwarding(ctx, cmd, sigs, cfg.Signals)
	<-repDone
	if ctx.Err() != nil {
		return res, fmt.Errorf("run %v: %w", cfg.Args, ctx.Err())
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return res, fmt.Errorf("run %v: %v", cfg.Args, waitErr)
	}
	final, _ := json.Marshal(report{Finished: true, Backend: backend.Copy, Exit: ws.ExitStatus(), Signal: signalOf(ws)})
	return decodeReport(io.MultiReader(bytes.NewReader(rep), bytes.NewReader(final)), res, waitErr)
}

// signalOf is the signal that killed a process, 0 if it exited.
func signalOf(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return int(ws.Signal())
	}
	return 0
}
