package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/internal/paths"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/selector"
)

// plan is what the init process needs to know, sent as JSON on its
// config pipe: the checked Config without its Go values.
type plan struct {
	Layers      []string
	Writable    bool
	KeepChanges string
	Volumes     []Volume
	Env         []string
	Workdir     string
	BindWork    string
	Args        []string
	Decision    selector.Decision // the caller's, carried to init as is
	Dir         string            // the run's transient directory
	// Remap: the caller mapped a subuid range with newuidmap; init must
	// exec itself again to gain root's capabilities in the namespace.
	Remap       bool
	KeepTmp     bool       `json:",omitempty"`
	IsolateNet  bool       `json:",omitempty"`
	User        *User      `json:",omitempty"`
	HostFiles   []HostFile `json:",omitempty"`
	EnvironFile string     `json:",omitempty"`
}

// report is what init and the exec stage tell Run, one JSON object each,
// on the report pipe.
type report struct {
	Error    string `json:",omitempty"`
	Kind     string `json:",omitempty"` // kindNotFound, kindNotExec, kindSetup
	Exit     int
	Signal   int
	Backend  string `json:",omitempty"`
	Finished bool   `json:",omitempty"`
}

const (
	kindSetup    = "setup"
	kindNotFound = "not-found"
	kindNotExec  = "not-executable"
	kindNoPath   = "not-in-container"
)

// reportedError is an error reported by init or the exec stage: its
// message, and the sentinel it stands for.
type reportedError struct {
	msg   string
	cause error
}

func (e *reportedError) Error() string {
	if e.cause == ErrCommandNotFound || e.cause == ErrNotExecutable {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *reportedError) Unwrap() error { return e.cause }

// Run runs cfg.Args in the container and returns how it ended. An error
// means the command did not run as asked: a bad Config (ErrBadConfig,
// nothing was started), a failure to mount or set up the container, or
// a command that could not be executed (ErrCommandNotFound,
// ErrNotExecutable). A command that ran and failed is not an error: see
// Result. Cancelling ctx kills the run.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{ExitCode: 125}, err
	}
	res := Result{Backend: cfg.Decision.Backend}
	tdir := cfg.TransientDir
	if tdir == "" {
		state, err := paths.StateDir()
		if err != nil {
			return Result{ExitCode: 125}, err
		}
		tdir = filepath.Join(state, "transient")
	}
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return Result{ExitCode: 125}, fmt.Errorf("transient directory: %w", err)
	}
	name := cfg.Name
	if name == "" {
		name = filepath.Base(cfg.Layers[0])
	}
	if iso := cfg.Decision.Isolation; iso == selector.IsolateChroot || iso == selector.IsolateNone {
		return runChroot(ctx, cfg, tdir, name, noNamespaces(cfg.Decision))
	}
	p := plan{
		Layers: cfg.Layers, Writable: cfg.Writable, KeepChanges: cfg.KeepChanges, Volumes: cfg.Volumes,
		Env: cfg.Env, Workdir: cfg.Workdir, BindWork: cfg.BindWork, Args: cfg.Args, Decision: cfg.Decision,
		User: cfg.User, HostFiles: cfg.HostFiles, EnvironFile: cfg.EnvironFile, KeepTmp: cfg.KeepTmp,
		IsolateNet: cfg.IsolateNetwork,
	}
	ids, err := containerIDs(cfg.UIDs, cfg.GIDs)
	if err != nil {
		return Result{ExitCode: 125}, err
	}
	p.Remap = ids != nil

	confR, confW, err := os.Pipe()
	if err != nil {
		return Result{ExitCode: 125}, err
	}
	defer confR.Close()
	defer confW.Close()
	repR, repW, err := os.Pipe()
	if err != nil {
		return Result{ExitCode: 125}, err
	}
	defer repR.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return Result{ExitCode: 125}, err
	}
	defer lifeW.Close()
	defer lifeR.Close()

	cmd := reexec.Command(initEntry)
	cmd.Env = initEnv(cmd.Env)
	cmd.SysProcAttr = initSysProcAttr(cfg.Decision.Isolation, ids)
	if cfg.IsolateNetwork {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = []*os.File{confR, repW, lifeR}

	// The init process dies with the thread that started it
	// (Pdeathsig): keep this goroutine on that thread until it is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Catch signals before the command can start: they wait in sigs and
	// reach the command once it runs, instead of killing this process.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		repW.Close()
		if nsRefused(err) && cfg.Decision.Backend == backend.Copy {
			// The copy backend runs everywhere: without namespaces,
			// with chroot.
			signal.Stop(sigs)
			slog.Debug("run: no namespace can be made, the copy runs with chroot", "err", err)
			return runChroot(ctx, cfg, tdir, name, err)
		}
		return Result{ExitCode: 125}, fmt.Errorf("start the container's init process in new %s: %w%s",
			namespacesOf(cmd.SysProcAttr), err, refusal(err))
	}
	repW.Close()
	confR.Close()
	lifeR.Close()
	p.Dir = filepath.Join(tdir, fmt.Sprintf("%s.%d", name, cmd.Process.Pid))
	defer func() {
		if cfg.KeepChanges != "" {
			layer.RemoveAll(keepWorkDir(cfg.KeepChanges, p.Dir))
		}
		if err := removeTransient(p.Dir); err != nil {
			slog.Warn("transient directory left behind; `ovl clean --transient` removes it", "dir", p.Dir, "err", err)
		}
	}()

	var repBuf bytes.Buffer
	repDone := make(chan struct{})
	go func() { io.Copy(&repBuf, repR); close(repDone) }()

	startErr := func() error {
		if err := os.Mkdir(p.Dir, 0o700); err != nil {
			return fmt.Errorf("transient directory: %w", err)
		}
		if ids != nil {
			if err := ids.Apply(cmd.Process.Pid); err != nil {
				return err
			}
		}
		return json.NewEncoder(confW).Encode(p)
	}()
	confW.Close()
	if startErr != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return Result{ExitCode: 125}, startErr
	}

	waitErr := waitForwarding(ctx, cmd, sigs, cfg.Signals)
	<-repDone
	if ctx.Err() != nil {
		return Result{ExitCode: 125, Backend: res.Backend}, fmt.Errorf("run %v: %w", cfg.Args, ctx.Err())
	}
	res, err = decodeReport(&repBuf, res, waitErr)
	if err == nil && res.ExitCode != 0 {
		printNote(cfg.Stderr, foreignRootNote(cfg, ids))
	}
	return res, err
}

// waitForwarding waits for cmd, passing on the signals that arrive on
// sigs and on more (a caller's own, Config.Signals) and killing it when
// ctx is done, and returns what Wait returned.
func waitForwarding(ctx context.Context, cmd *exec.Cmd, sigs, more <-chan os.Signal) error {
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	done := ctx.Done()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case s := <-more:
			cmd.Process.Signal(s)
		case <-done:
			cmd.Process.Kill()
			done = nil
		case err := <-waitDone:
			return err
		}
	}
}

// decodeReport turns the reports of init and the exec stage into Run's
// result.
func decodeReport(r io.Reader, res Result, waitErr error) (Result, error) {
	dec := json.NewDecoder(r)
	var final *report
	for {
		var rep report
		if err := dec.Decode(&rep); err != nil {
			break
		}
		if rep.Error != "" {
			err := &reportedError{msg: rep.Error}
			code := 125
			switch rep.Kind {
			case kindNotFound:
				err.cause, code = ErrCommandNotFound, 127
			case kindNotExec:
				err.cause, code = ErrNotExecutable, 126
			case kindNoPath:
				err.cause = ErrNotInContainer
			}
			return Result{ExitCode: code, Backend: res.Backend}, err
		}
		if rep.Finished {
			final = &rep
		}
	}
	if final == nil {
		return Result{ExitCode: 125, Backend: res.Backend}, fmt.Errorf("the container's init process ended without a report (%v)", waitErr)
	}
	res.Backend = final.Backend
	res.ExitCode = final.Exit
	if final.Signal != 0 {
		res.Signal = syscall.Signal(final.Signal)
		res.ExitCode = 128 + final.Signal
	}
	return res, nil
}

// initEnv keeps of env what init and the backends it runs need: the
// command can read init's environment (/proc/1/environ), and should not
// find the caller's secrets there.
func initEnv(env []string) []string {
	keep := map[string]bool{"PATH": true, "TERM": true, "HOME": true, "TMPDIR": true,
		"XDG_RUNTIME_DIR": true, "XDG_STATE_HOME": true, "GOCOVERDIR": true}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if keep[k] || strings.HasPrefix(k, "OVL_") {
			out = append(out, kv)
		}
	}
	return out
}

// forwardedSignals are passed on to the command.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// initSysProcAttr starts init in new mount and pid namespaces, and, when
// the decision isolates runs in a user namespace (the caller lacks
// CAP_SYS_ADMIN: an ordinary user, root in a default container), in a
// new user namespace: mapped by the Go runtime when there is no subuid
// range (ids nil: userns.Mappings), by newuidmap later otherwise.
func initSysProcAttr(iso selector.Isolation, ids *idmap.Map) *syscall.SysProcAttr {
	if iso == "" { // a decision made without one: by capability
		iso = selector.IsolateUserns
		if userns.CanMount() {
			iso = selector.IsolateNamespaces
		}
	}
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	if iso != selector.IsolateUserns {
		return attr
	}
	attr.Cloneflags |= syscall.CLONE_NEWUSER
	if ids == nil {
		attr.UidMappings, attr.GidMappings, attr.GidMappingsEnableSetgroups = userns.Mappings()
	}
	return attr
}

// namespacesOf names the namespaces attr asks for, for messages.
func namespacesOf(attr *syscall.SysProcAttr) string {
	if attr.Cloneflags&syscall.CLONE_NEWUSER != 0 {
		return "user, mount and pid namespaces"
	}
	return "mount and pid namespaces"
}
