package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// Names of the re-exec entry points of a run.
const (
	initEntry = "ovl-runner-init"
	execEntry = "ovl-runner-exec"
	// envPlan carries the plan across init's second exec (subuid runs).
	envPlan = "OVL_RUNNER_PLAN"
	// envReexec is reexec's variable, set again for that exec.
	envReexec = "OVL_REEXEC"
)

func init() {
	reexec.Register(initEntry, initMain)
	reexec.Register(execEntry, execMain)
}

// Descriptors init inherits from Run.
const (
	fdPlan   = 3
	fdReport = 4
	// fdLifeline is the read end of a pipe whose write end only Run
	// holds: EOF means Run is gone. Pdeathsig does not survive init's
	// exec as root of a user namespace; this does.
	fdLifeline = 5
)

// watchLifeline ends the run when Run's process dies: init exits, and
// the kernel kills everything in its pid namespace.
func watchLifeline() {
	unix.CloseOnExec(fdLifeline)
	f := os.NewFile(fdLifeline, "lifeline")
	go func() {
		io.Copy(io.Discard, f)
		os.Exit(137)
	}()
}

// initMain is pid 1 of the run's namespaces.
func initMain() {
	var p plan
	if data := os.Getenv(envPlan); data != "" {
		os.Unsetenv(envPlan)
		if err := json.Unmarshal([]byte(data), &p); err != nil {
			fmt.Fprintln(os.Stderr, "ovl: init: bad plan:", err)
			os.Exit(125)
		}
	} else {
		f := os.NewFile(fdPlan, "plan")
		if err := json.NewDecoder(f).Decode(&p); err != nil {
			// Run failed before sending a plan and kills us.
			os.Exit(125)
		}
		f.Close()
		if p.Remap {
			// newuidmap has made us root in the namespace, but
			// capabilities come with an exec as root.
			data, _ := json.Marshal(p)
			env := append(os.Environ(), envReexec+"="+initEntry, envPlan+"="+string(data))
			err := syscall.Exec(reexec.Self(), []string{os.Args[0]}, env)
			fmt.Fprintln(os.Stderr, "ovl: init: exec after id mapping:", err)
			os.Exit(125)
		}
	}
	watchLifeline()
	unix.CloseOnExec(fdReport)
	rep := os.NewFile(fdReport, "report")
	c := &container{plan: p, reportFile: rep, report: json.NewEncoder(rep)}
	os.Exit(c.run())
}

// container is the state of init: what it mounted, to undo it.
type container struct {
	plan plan
	// reportFile is the one *os.File of the report descriptor: a second
	// one would close it when garbage-collected.
	reportFile *os.File
	report     *json.Encoder
	root       string // where the container's root is mounted
	priv       string // a tmpfs private to the run: uppers, volumes
	backend    backend.Backend
	used       string // what mounted the root: a backend name or "bind"
	undo       []func() error
}

// run sets up the container, runs the command and tears down; it
// returns init's exit status.
func (c *container) run() int {
	if err := c.setup(); err != nil {
		c.teardown()
		kind := kindSetup
		if errors.Is(err, ErrNotInContainer) {
			kind = kindNoPath
		}
		c.report.Encode(report{Error: err.Error(), Kind: kind})
		return 125
	}
	ws, err := c.runCommand()
	if err != nil {
		c.teardown()
		c.report.Encode(report{Error: err.Error(), Kind: kindSetup})
		return 125
	}
	if err := c.teardown(); err != nil && c.plan.KeepChanges != "" {
		c.report.Encode(report{Error: fmt.Sprintf("keep changes in %s: %v", c.plan.KeepChanges, err), Kind: kindSetup})
		return 125
	}
	rep := report{Finished: true, Backend: c.used, Exit: ws.ExitStatus()}
	if ws.Signaled() {
		rep.Signal = int(ws.Signal())
	}
	c.report.Encode(rep)
	return 0
}

// onTeardown registers f to run at teardown, in reverse order.
func (c *container) onTeardown(f func() error) { c.undo = append(c.undo, f) }

func (c *container) teardown() error {
	var errs []error
	for i := len(c.undo) - 1; i >= 0; i-- {
		if err := c.undo[i](); err != nil {
			slog.Warn("teardown", "err", err)
			errs = append(errs, err)
		}
	}
	c.undo = nil
	return errors.Join(errs...)
}

// getBackend opens the backend of the caller's decision, once.
func (c *container) getBackend() (backend.Backend, error) {
	if c.backend == nil {
		b, err := c.plan.Decision.Open()
		if err != nil {
			return nil, err
		}
		c.backend = b
	}
	return c.backend, nil
}

// discarder is a mount that can end without keeping its changes more
// cheaply than Unmount (the copy backend: no diff to compute).
type discarder interface {
	Discard() error
}

// mountStack mounts spec through the run's backend and registers its
// end: Unmount when keep is set (the changes go to spec.Upper), else
// Discard where the mount offers it (the copy backend: no diff to make).
func (c *container) mountStack(spec layer.Spec, keep bool) error {
	b, err := c.getBackend()
	if err != nil {
		return err
	}
	// A throw-away upper needs no syncs: nothing in it must survive a
	// crash, and copy-up without fsync is several times faster.
	if !keep && spec.Upper != "" && b.Features().Volatile {
		spec.Options.Volatile = true
	}
	m, err := b.Mount(context.Background(), spec)
	if err != nil {
		return fmt.Errorf("%s backend: mount %v at %s: %w", b.Name(), spec.Lowers, spec.Target, err)
	}
	c.onTeardown(func() error {
		if d, ok := m.(discarder); ok && !keep {
			return d.Discard()
		}
		return m.Unmount()
	})
	return nil
}

func (c *container) mount(f func() error, target string) error {
	if err := f(); err != nil {
		return err
	}
	c.onTeardown(func() error { return detach(target) })
	return nil
}

func (c *container) setup() error {
	p := c.plan
	if err := userns.MakePrivate(); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if p.IsolateNet {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("isolated network: bring up lo: %w", err)
		}
	}
	c.root = filepath.Join(p.Dir, "root")
	c.priv = filepath.Join(p.Dir, "priv")
	for _, d := range []string{c.root, c.priv} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if err := c.mount(func() error { return mountFS("tmpfs", c.priv, unix.MS_NOSUID|unix.MS_NODEV, "mode=0700") }, c.priv); err != nil {
		return err
	}
	if err := c.mountRoot(); err != nil {
		return err
	}
	if err := c.systemMounts(); err != nil {
		return err
	}
	if p.BindWork != "" {
		mp, err := resolveInRoot(c.root, "/work", p.Writable)
		if err != nil {
			return fmt.Errorf("bind-work: %w (the container needs a /work directory)", err)
		}
		if err := c.mount(func() error { return bind(p.BindWork, mp) }, mp); err != nil {
			return err
		}
	}
	vols := append([]Volume(nil), p.Volumes...)
	sort.SliceStable(vols, func(i, j int) bool { return strings.Count(vols[i].Path, "/") < strings.Count(vols[j].Path, "/") })
	for i, v := range vols {
		if err := c.volume(i, v); err != nil {
			return fmt.Errorf("volume %s: %w", v.Path, err)
		}
	}
	for _, f := range p.HostFiles {
		if err := c.hostFile(f, vols); err != nil {
			return fmt.Errorf("%s at %s: %w", f.Src, f.Dst, err)
		}
	}
	if p.EnvironFile != "" {
		env, err := readEnvironFile(c.root, p.EnvironFile)
		if err != nil {
			return err
		}
		c.plan.Env = append(env, c.plan.Env...)
	}
	if !p.Writable {
		if err := remountReadOnly(c.root, false); err != nil {
			return err
		}
	}
	return nil
}

// mountRoot mounts the container's root at c.root: a read-only bind for
// a read-only run of one layer, the backend otherwise; then binds it on
// itself so that it is a mount point pivot_root accepts, whatever the
// backend.
func (c *container) mountRoot() error {
	p := c.plan
	if !p.Writable && len(p.Layers) == 1 {
		c.used = "bind"
		return c.mount(func() error { return bind(p.Layers[0], c.root) }, c.root)
	}
	b, err := c.getBackend()
	if err != nil {
		return err
	}
	c.used = b.Name()
	spec := layer.Spec{Lowers: p.Layers, Target: c.root, Namespace: p.Decision.Namespace, ReadOnly: !p.Writable}
	if p.Writable {
		if p.KeepChanges != "" {
			spec.Upper = p.KeepChanges
			spec.Work = keepWorkDir(p.KeepChanges, p.Dir)
			if err := os.MkdirAll(spec.Upper, 0o755); err != nil {
				return fmt.Errorf("keep-changes: %w", err)
			}
			if err := os.Mkdir(spec.Work, 0o700); err != nil {
				return fmt.Errorf("keep-changes work directory: %w", err)
			}
			c.onTeardown(func() error { return layer.RemoveAll(spec.Work) })
		} else {
			spec.Upper, spec.Work = filepath.Join(c.priv, "upper"), filepath.Join(c.priv, "work")
			for _, d := range []string{spec.Upper, spec.Work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					return err
				}
			}
			// The merged root shows the upper root's mode and owner.
			if err := layer.CopyMetadata(p.Layers[0], spec.Upper); err != nil {
				return err
			}
		}
	}
	if err := c.mountStack(spec, p.KeepChanges != ""); err != nil {
		return err
	}
	return c.mount(func() error { return bind(c.root, c.root) }, c.root)
}

// keepWorkDir is the work directory of a --keep-changes upper: next to it
// (same filesystem), named after the run.
func keepWorkDir(upper, runDir string) string {
	return filepath.Join(filepath.Dir(upper), "."+filepath.Base(upper)+".work."+filepath.Base(runDir))
}

// systemMounts gives the container /proc, /sys (read-only), a minimal
// /dev, and tmpfs /tmp (unless KeepTmp) and /run, as vagga does.
func (c *container) systemMounts() error {
	at := map[string]string{}
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run"} {
		mp, err := resolveInRoot(c.root, d, c.plan.Writable)
		if err != nil {
			return fmt.Errorf("%w (a container root needs /proc, /sys, /dev, /tmp and /run directories)", err)
		}
		at[d] = mp
	}
	const nosuid = unix.MS_NOSUID | unix.MS_NODEV
	if err := c.mount(func() error {
		err := mountFS("proc", at["/proc"], nosuid|unix.MS_NOEXEC, "")
		if err != nil {
			// A proc with parts masked by the host cannot be mounted
			// afresh in a user namespace: show the host's.
			slog.Debug("fresh /proc refused, binding the host's", "err", err)
			return bind("/proc", at["/proc"])
		}
		return nil
	}, at["/proc"]); err != nil {
		return err
	}
	if err := c.mount(func() error {
		if err := bind("/sys", at["/sys"]); err != nil {
			return err
		}
		return remountReadOnly(at["/sys"], true)
	}, at["/sys"]); err != nil {
		return err
	}
	if err := c.mount(func() error { return mountFS("tmpfs", at["/dev"], unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=1m") }, at["/dev"]); err != nil {
		return err
	}
	dev := at["/dev"]
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := filepath.Join(dev, name)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := c.mount(func() error { return bind("/dev/"+name, p) }, p); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	pts := filepath.Join(dev, "pts")
	if err := c.mount(func() error {
		return mountFS("devpts", pts, unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
	}, pts); err != nil {
		return err
	}
	shm := filepath.Join(dev, "shm")
	if err := c.mount(func() error { return mountFS("tmpfs", shm, nosuid, "mode=1777") }, shm); err != nil {
		return err
	}
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	if !c.plan.KeepTmp {
		if err := c.mount(func() error { return mountFS("tmpfs", at["/tmp"], nosuid, "mode=1777") }, at["/tmp"]); err != nil {
			return err
		}
	}
	return c.mount(func() error { return mountFS("tmpfs", at["/run"], nosuid, "mode=0755") }, at["/run"])
}

// volume mounts v, the i-th volume.
func (c *container) volume(i int, v Volume) error {
	mp, err := resolveInRoot(c.root, v.Path, c.plan.Writable)
	if err != nil {
		if errors.Is(err, ErrNotInContainer) {
			return fmt.Errorf("%w (create it in the container, or run with --writable)", err)
		}
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil {
		return fmt.Errorf("stat %s: %w", mp, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory in the container", v.Path)
	}
	// The mountpoint's owner, or -1 (leave as made) for one this user
	// namespace cannot map: another host user's, seen as the overflow id.
	uid, gid := mappedOr(int(st.Uid), "/proc/self/uid_map"), mappedOr(int(st.Gid), "/proc/self/gid_map")
	if v.UID >= 0 {
		uid = v.UID
	}
	if v.GID >= 0 {
		gid = v.GID
	}
	switch v.Kind {
	case Bind:
		return c.mount(func() error {
			if err := bind(v.HostDir, mp); err != nil {
				return err
			}
			if v.ReadOnly {
				return remountReadOnly(mp, true)
			}
			return nil
		}, mp)
	case Tmpfs:
		mode := st.Mode & 0o7777
		if v.Mode != nil {
			mode = *v.Mode
		}
		data := fmt.Sprintf("size=%d,mode=%o", v.Size, mode)
		if uid >= 0 {
			data += fmt.Sprintf(",uid=%d", uid)
		}
		if gid >= 0 {
			data += fmt.Sprintf(",gid=%d", gid)
		}
		if err := c.mount(func() error { return mountFS("tmpfs", mp, unix.MS_NOSUID|unix.MS_NODEV, data) }, mp); err != nil {
			return err
		}
		return tmpfsContents(mp, v)
	case Empty:
		// As vagga: the smallest tmpfs, mode 0, read-only.
		return c.mount(func() error {
			if err := mountFS("tmpfs", mp, unix.MS_NOSUID|unix.MS_NODEV, "size=1,mode=0"); err != nil {
				return err
			}
			return remountReadOnly(mp, false)
		}, mp)
	}
	return c.snapshot(i, v, mp, st.Mode&0o7777, uid, gid)
}

// loopbackUp brings up the loopback device of this network namespace
// (a new one has it down).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// tmpfsContents makes v's subdirectories and files in the tmpfs at mp:
// each path resolved inside the volume, directories with their mode
// (past the umask), files 0644; a file's directory must be there.
func tmpfsContents(mp string, v Volume) error {
	for _, d := range v.Subdirs {
		dir, err := resolveInRoot(mp, filepath.Dir(d.Path), true)
		if err != nil {
			return fmt.Errorf("subdir %s: %w", d.Path, err)
		}
		p := filepath.Join(dir, filepath.Base(d.Path))
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("subdir %s: %w", d.Path, err)
		}
		if err := unix.Chmod(p, d.Mode); err != nil {
			return fmt.Errorf("subdir %s: %w", d.Path, err)
		}
	}
	for _, f := range v.Files {
		dir, err := resolveInRoot(mp, filepath.Dir(f.Path), false)
		if err != nil {
			return fmt.Errorf("file %s (give its directory under subdirs): %w", f.Path, err)
		}
		p := filepath.Join(dir, filepath.Base(f.Path))
		if err := os.WriteFile(p, []byte(f.Content), 0o644); err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// hostFile binds the host file f.Src read-only at f.Dst, unless a volume
// is mounted there. A Dst the container lacks is made in a writable run
// and skipped in a read-only one.
func (c *container) hostFile(f HostFile, vols []Volume) error {
	for _, v := range vols {
		if v.Path == filepath.Clean(f.Dst) {
			return nil
		}
	}
	if _, err := os.Stat(f.Src); err != nil {
		slog.Debug("host file not there, not shown in the container", "file", f.Src, "err", err)
		return nil
	}
	mp, err := resolveInRoot(c.root, f.Dst, false)
	if errors.Is(err, ErrNotInContainer) {
		if !c.plan.Writable {
			slog.Debug("no such file in the read-only container, host file not shown", "path", f.Dst)
			return nil
		}
		dir, derr := resolveInRoot(c.root, filepath.Dir(f.Dst), false)
		if derr != nil {
			slog.Debug("no directory for the host file", "path", f.Dst, "err", derr)
			return nil
		}
		mp = filepath.Join(dir, filepath.Base(f.Dst))
		if err := os.WriteFile(mp, nil, 0o644); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if fi, err := os.Stat(mp); err != nil || !fi.Mode().IsRegular() {
		return nil // not a file to show it on
	}
	return c.mount(func() error {
		if err := bind(f.Src, mp); err != nil {
			return err
		}
		return remountReadOnly(mp, false)
	}, mp)
}

// readEnvironFile reads vagga's environ-file, a file of the container
// at p: NAME=value lines (a value starting with a double quote loses its
// quotes), as KEY=VALUE.
func readEnvironFile(root, p string) ([]string, error) {
	hp, err := resolveInRoot(root, p, false)
	if err != nil {
		return nil, fmt.Errorf("reading environment file %s: %w", p, err)
	}
	data, err := os.ReadFile(hp)
	if err != nil {
		return nil, fmt.Errorf("reading environment file %s: %w", p, err)
	}
	var out []string
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("reading environment file %s: bad format at line %d (want NAME=value)", p, i+1)
		}
		if strings.HasPrefix(v, `"`) {
			v = strings.Trim(v, `"`)
		}
		out = append(out, k+"="+v)
	}
	return out, nil
}

// snapshot mounts at mp a writable overlay of the volume's source whose
// upper and work live on a tmpfs of the volume's size (with the copy
// backend: the copy itself lives there), and gives its root the given
// mode and owner.
func (c *container) snapshot(i int, v Volume, mp string, mode uint32, uid, gid int) error {
	dir := filepath.Join(c.priv, fmt.Sprintf("vol%d", i))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := c.mount(func() error {
		return mountFS("tmpfs", dir, unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", v.Size))
	}, dir); err != nil {
		return err
	}
	src := v.From
	if src == "" {
		// Bind the container's directory aside first: once the
		// snapshot covers mp, the path no longer leads to it.
		src = filepath.Join(c.priv, fmt.Sprintf("src%d", i))
		if err := os.Mkdir(src, 0o700); err != nil {
			return err
		}
		if err := c.mount(func() error { return bind(mp, src) }, src); err != nil {
			return err
		}
	}
	spec := layer.Spec{Lowers: []string{src}, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"),
		Target: filepath.Join(dir, "data"), Namespace: c.plan.Decision.Namespace}
	for _, d := range []string{spec.Upper, spec.Work, spec.Target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := layer.CopyMetadata(src, spec.Upper); err != nil {
		return err
	}
	if mountErr := c.mountStack(spec, false); mountErr != nil {
		if errors.Is(mountErr, unix.ENOSPC) {
			return fmt.Errorf("%w (the contents do not fit in size=%d; give a larger size)", mountErr, v.Size)
		}
		if !errors.Is(mountErr, unix.EINVAL) || !onOverlay(src) {
			return mountErr
		}
		// Kernel overlay stacks two deep at most (Linux:
		// include/linux/fs.h:FILESYSTEM_MAX_STACK_DEPTH): a snapshot of
		// a writable root whose layers are themselves on an overlay (a
		// container's root) would be a third. Copy the contents into
		// the volume's tmpfs instead, as vagga's snapshots do.
		slog.Debug("snapshot: overlay refused, copying", "volume", v.Path, "err", mountErr)
		if err := layer.Flatten(context.Background(), []string{src}, spec.Target); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				return fmt.Errorf("copy %s: %w (the contents do not fit in size=%d; give a larger size)", v.Path, err, v.Size)
			}
			return fmt.Errorf("copy %s, as overlay refused it (%v): %w", v.Path, mountErr, err)
		}
	}
	if err := os.Lchown(spec.Target, uid, gid); err != nil {
		return fmt.Errorf("owner %d:%d: %w", uid, gid, err)
	}
	if err := unix.Chmod(spec.Target, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", spec.Target, err)
	}
	return c.mount(func() error { return bind(spec.Target, mp) }, mp)
}

// runCommand starts the exec stage and waits for it, forwarding signals
// and reaping orphans, as pid 1 must.
func (c *container) runCommand() (unix.WaitStatus, error) {
	data, err := json.Marshal(execPlan{Root: c.root, Workdir: c.plan.Workdir, Env: c.plan.Env, Args: c.plan.Args, User: c.plan.User})
	if err != nil {
		return 0, err
	}
	cmd := reexec.Command(execEntry)
	cmd.Env = append(cmd.Env, envExec+"="+string(data))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{c.reportFile}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the command: %w", err)
	}
	pid := cmd.Process.Pid
	go func() {
		for s := range sigs {
			unix.Kill(pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for the command: %w", err)
		}
		if got == pid {
			return ws, nil
		}
	}
}

// onOverlay reports whether path is on an overlay mount.
func onOverlay(path string) bool {
	var sfs unix.Statfs_t
	return unix.Statfs(path, &sfs) == nil && sfs.Type == unix.OVERLAYFS_SUPER_MAGIC
}

// mappedOr returns id when the id map file (/proc/self/uid_map or
// gid_map) maps it, and -1 otherwise.
func mappedOr(id int, mapFile string) int {
	data, err := os.ReadFile(mapFile)
	if err != nil {
		return id
	}
	for _, line := range strings.Split(string(data), "\n") {
		var inside, outside, count int
		if n, _ := fmt.Sscan(line, &inside, &outside, &count); n == 3 && id >= inside && id-inside < count {
			return id
		}
	}
	return -1
}
