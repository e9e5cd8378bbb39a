package fusefs

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/layer"
)

// Backend mounts stacks with ovl's FUSE union filesystem, each served by
// a daemon process (see Mount for which binary it runs).
type Backend struct {
	// Daemon is the binary Mount starts as the daemon: a program whose
	// main calls reexec.Init first and that links this package (ovl-fuse,
	// ovl, a test binary). "" is DefaultDaemon().
	Daemon string
}

// NewBackend returns the FUSE backend.
func NewBackend() *Backend { return &Backend{} }

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Server  = (*Backend)(nil)
)

func (*Backend) Name() string { return backend.FUSE }

// MaxLayers is 0: the union has no depth limit of its own.
func (*Backend) MaxLayers() int { return 0 }

// Features lists what Mount honours: volatile (no syncs on copy-up),
// allow_other, and xino (inode numbers are unique across layers anyway).
// Index, redirect_dir and metacopy are not implemented.
func (*Backend) Features() layer.Options {
	return layer.Options{Volatile: true, AllowOther: true, Xino: true}
}

// checkFeatures refuses a spec that asks for a feature the union lacks.
func checkFeatures(spec layer.Spec) error {
	var missing []string
	for _, f := range []struct {
		on   bool
		name string
	}{{spec.Options.Index, "index"}, {spec.Options.RedirectDir, "redirect_dir"}, {spec.Options.Metacopy, "metacopy"}} {
		if f.on {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("fuse: %w: the FUSE union does not implement %s (mount without it, or use the native backend)",
			backend.ErrUnavailable, strings.Join(missing, ", "))
	}
	return nil
}

// daemonEntry is the re-exec entry point of the daemon.
const daemonEntry = "fusefs-daemon"

func init() { reexec.Register(daemonEntry, daemonMain) }

// envRequestFd names the daemon's file descriptor from which it reads
// its request; its absence tells a daemon that an ovl of another build
// (which passed the request otherwise) started it.
const envRequestFd = "OVL_FUSEFS_REQUEST_FD"

// daemonRequest is what Mount hands the daemon, as JSON on the pipe
// envRequestFd names.
type daemonRequest struct {
	Spec          layer.Spec
	NoPassthrough bool
	StrictOpen    bool
}

// DaemonName is the slim daemon binary's name (cmd/ovl-fuse), which
// `make build` puts next to ovl.
const DaemonName = "ovl-fuse"

// DefaultDaemon is the daemon binary Mount starts when Backend.Daemon is
// "": DaemonName in the running executable's directory when it is there
// (bin/ovl-fuse beside bin/ovl, see DaemonBeside), else this binary
// itself, re-executed (a test binary, an ovl built alone). The slim
// binary starts in less than half the time: it links only what serving
// needs and runs no package initialisation of the command line's
// libraries.
func DefaultDaemon() string { return defaultDaemon() }

var defaultDaemon = sync.OnceValue(func() string {
	self, err := os.Executable()
	if err != nil {
		return reexec.Self()
	}
	if p := DaemonBeside(self); p != "" && p != self {
		return p
	}
	return reexec.Self()
})

// DaemonBeside returns the path of the executable DaemonName in the
// directory of the binary at path, or "" when there is none that can be
// trusted as much as that binary: it must be a regular file of the same
// owner, writable by no one else. (Root running /tmp/ovl must not run an
// ovl-fuse another user left in /tmp.)
func DaemonBeside(path string) string {
	var self, d unix.Stat_t
	p := filepath.Join(filepath.Dir(path), DaemonName)
	if unix.Stat(path, &self) != nil || unix.Stat(p, &d) != nil {
		return ""
	}
	if d.Mode&unix.S_IFMT != unix.S_IFREG || d.Uid != self.Uid || d.Mode&0o022 != 0 || unix.Access(p, unix.X_OK) != nil {
		return ""
	}
	return p
}

// Mount starts a daemon (a detached process of b.Daemon, in its own
// session) that mounts spec and serves it, and returns once the mount is
// live. The daemon exits when the mount goes away.
func (b *Backend) Mount(ctx context.Context, spec layer.Spec) (backend.Mount, error) {
	bin := b.Daemon
	if bin == "" {
		bin = DefaultDaemon()
	}
	return mountDaemon(ctx, bin, spec, EnvOptions())
}

// Serve serves spec from this process (the package's Serve), with the
// tuning knobs of the environment (EnvOptions), as the daemon Mount
// starts would.
func (b *Backend) Serve(ctx context.Context, spec layer.Spec, ready func()) error {
	opts := EnvOptions()
	opts.Ready = ready
	return Serve(ctx, spec, opts)
}

// Environment knobs of the daemon (see EnvOptions).
const (
	// EnvStrictOpen=1 turns Options.StrictOpen on.
	EnvStrictOpen = "OVL_FUSE_STRICT_OPEN"
	// EnvPassthrough=0 turns passthrough off (Options.NoPassthrough).
	EnvPassthrough = "OVL_FUSE_PASSTHROUGH"
	// EnvDebug=1 logs every FUSE request (Options.Debug; the drop-in
	// mode's -d, as fuse-overlayfs's).
	EnvDebug = "OVL_FUSE_DEBUG"
)

// EnvOptions reads the tuning knobs from the environment (EnvStrictOpen,
// EnvPassthrough), as Backend.Mount and Backend.Serve do.
func EnvOptions() Options {
	return Options{NoPassthrough: os.Getenv(EnvPassthrough) == "0", StrictOpen: os.Getenv(EnvStrictOpen) == "1",
		Debug: os.Getenv(EnvDebug) == "1"}
}

// mountDaemon starts bin as the daemon of spec (see Mount). The daemon
// is started first and sent its request through a pipe once spec is
// checked here: the check (a stat of every path component) runs while
// the new process loads, and the daemon does not repeat it. A spec that
// fails it closes the pipe, and the daemon exits without mounting.
func mountDaemon(ctx context.Context, bin string, spec layer.Spec, opts Options) (backend.Mount, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	rr, rw, err := os.Pipe()
	if err != nil {
		pw.Close()
		return nil, err
	}
	defer rw.Close()
	cmd := reexec.CommandOf(bin, daemonEntry, daemonArgs(spec.Target)[1:]...)
	cmd.Args[0] = daemonArgs(spec.Target)[0]
	if os.Getenv("GOMAXPROCS") == "" {
		// The runtime starts with the Ps the daemon serves with: raising
		// GOMAXPROCS later stops the world, 0.2-2.6 ms at start here.
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(servingProcs()))
	}
	cmd.ExtraFiles = []*os.File{pw, rr} // fd 3: the ready pipe; fd 4: the request
	cmd.Env = append(cmd.Env, envRequestFd+"=4")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = nil
	var stderr reexec.LimitedBuffer
	cmd.Stderr = &stderr
	if os.Getenv("OVL_FUSEFS_DEBUG") != "" {
		cmd.Stderr = os.Stderr
	}
	err = cmd.Start()
	pw.Close()
	rr.Close()
	if err != nil {
		return nil, fmt.Errorf("start fuse daemon %s: %w", bin, err)
	}
	req, err := daemonRequestOf(spec, opts)
	if err != nil {
		rw.Close()
		cmd.Wait()
		return nil, err
	}
	// A daemon that died before reading it says why on the ready pipe.
	rw.Write(req)
	rw.Close()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	var msg string
	select {
	case msg = <-ready:
	case <-ctx.Done():
		cmd.Process.Kill()
		cmd.Wait()
		unix.Unmount(spec.Target, unix.MNT_DETACH)
		return nil, ctx.Err()
	}
	if msg != "ok" {
		cmd.Wait()
		if msg == "" {
			msg = "daemon exited before the mount was live"
		}
		// What the daemon and fusermount3 wrote says why: fusermount3's
		// refusal (no write access to the mount point, allow_other
		// without user_allow_other, ...) goes there, not into the error
		// go-fuse returns ("fusermount exited with code 256").
		if why := strings.TrimSpace(stderr.String()); why != "" {
			msg += ": " + strings.ReplaceAll(why, "\n", "; ")
		}
		return nil, fmt.Errorf("fuse mount %s: %s", spec.Target, msg)
	}
	m := &daemonMount{target: spec.Target, cmd: cmd, exited: make(chan struct{})}
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	return m, nil
}

// daemonRequestOf checks spec for Mount and encodes the daemon's request.
func daemonRequestOf(spec layer.Spec, opts Options) ([]byte, error) {
	if err := spec.Validate(0); err != nil {
		return nil, err
	}
	if err := checkFeatures(spec); err != nil {
		return nil, err
	}
	return json.Marshal(daemonRequest{Spec: spec, NoPassthrough: opts.NoPassthrough, StrictOpen: opts.StrictOpen})
}

// daemonArgs is the daemon's command line, as ps shows it: the binary
// may run as /proc/self/exe (see reexec.Self), which says nothing, and
// the daemon reads its request from a pipe, so its arguments are only
// there to tell it apart.
func daemonArgs(target string) []string { return []string{"ovl", "fuse-daemon", target} }

// daemonMount is one live stack served by a daemon this process started.
type daemonMount struct {
	target  string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	once    sync.Once
	err     error
}

func (m *daemonMount) Target() string { return m.target }

// Pid is the daemon's process id.
func (m *daemonMount) Pid() int { return m.cmd.Process.Pid }

// Unmount detaches the tree and waits for the daemon to exit. A copy of
// the mount that another mount namespace still holds stops working (it
// fails with ENOTCONN), as nothing may change the upper once Unmount
// returns.
func (m *daemonMount) Unmount() error {
	m.once.Do(func() {
		select {
		case <-m.exited:
			// The daemon is gone; make sure nothing is left mounted.
			unix.Unmount(m.target, unix.MNT_DETACH)
			return
		default:
		}
		if err := backend.Unmount(m.target, false); err != nil {
			m.err = err
			return
		}
		// The daemon exits by itself when the mount is gone, unless
		// another mount namespace holds a copy of it: tell it to stop
		// serving (see Serve), rather than wait for that copy to go.
		m.cmd.Process.Signal(unix.SIGTERM)
		<-m.exited
	})
	return m.err
}

// daemonMain serves one stack: it reads its request (daemonRequest) from
// the pipe envRequestFd names, reports "ok" or an error on fd 3 once the
// mount is live or has failed, unmounts on SIGTERM and SIGINT, and exits
// when the mount goes away.
func daemonMain() {
	ready := os.NewFile(3, "ready")
	report := func(msg string) {
		if ready != nil {
			io.WriteString(ready, msg+"\n")
			ready.Close()
			ready = nil
		}
	}
	fd, err := strconv.Atoi(os.Getenv(envRequestFd))
	if err != nil {
		report("no " + envRequestFd + " in the environment: was this daemon started by an ovl of another build?")
		os.Exit(2)
	}
	os.Unsetenv(envRequestFd)
	b, err := io.ReadAll(os.NewFile(uintptr(fd), "request"))
	if err != nil {
		report("read the request: " + err.Error())
		os.Exit(2)
	}
	if len(b) == 0 {
		os.Exit(2) // Mount found the spec wrong and says so itself.
	}
	var req daemonRequest
	if err := json.Unmarshal(b, &req); err != nil {
		report("bad request: " + err.Error())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	signal.Ignore(unix.SIGHUP, unix.SIGPIPE)
	err = Serve(ctx, req.Spec, Options{NoPassthrough: req.NoPassthrough, StrictOpen: req.StrictOpen, alone: true, checked: true, Ready: func() {
		report("ok")
		// Nothing more goes to the caller's terminal once it is detached.
		if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			unix.Dup3(int(devnull.Fd()), 2, 0)
		}
	}})
	if err != nil {
		if ready != nil {
			report(strings.TrimSpace(err.Error()))
		} else {
			slog.Error("fuse daemon", "err", err)
		}
		os.Exit(1)
	}
}
