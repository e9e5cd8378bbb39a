package native

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// maxFsconfigString is the longest string fsconfig(2) takes as a value:
// the kernel copies at most 256 bytes including the NUL
// (Linux: fs/fsopen.c: strndup_user(_value, 256)).
const maxFsconfigString = 255

// lowerMode says how the new mount API is given the lower layers.
type lowerMode int

const (
	// lowerdirPlus adds one "lowerdir+" per layer, unescaped (Linux 6.8+).
	lowerdirPlus lowerMode = iota
	// lowerdirString sets one escaped, ':'-separated "lowerdir".
	lowerdirString
)

// mounter makes the system calls of a mount. Tests replace the calls
// that tell which API the kernel has, to walk each fallback on a kernel
// that has them all (internal/kernelsim makes the kernel itself refuse
// them, for whole programs).
type mounter struct {
	fsopen    func(fsName string, flags int) (int, error)
	setString func(fd int, key, value string) error
	create    func(fd int) error
}

// kernelMounter calls the kernel.
var kernelMounter = mounter{fsopen: unix.Fsopen, setString: unix.FsconfigSetString, create: unix.FsconfigCreate}

// stack mounts spec, already validated, on spec.Target with opts,
// choosing the newest way the kernel supports: lowerdir+, else one
// lowerdir string, else mount(2). On error nothing is mounted.
func (m mounter) stack(spec layer.Spec, opts []option) error {
	kmsg := openKmsg()
	defer kmsg.close()
	err := m.fallback(spec, opts)
	var me *MountError
	if errors.As(err, &me) {
		if lines := kmsg.overlayLines(); len(lines) > 0 {
			me.Kernel = append(me.Kernel, lines...)
		} else if len(me.Kernel) == 0 && kmsg == nil && kernelMayLog(err) {
			me.Kernel = []string{noReason()}
		}
	}
	return err
}

// kernelMayLog reports whether the kernel may have logged why it
// refused a mount with err: overlay logs its own refusals of a stack, not
// a missing call, a refused permission or ovl's own limit.
func kernelMayLog(err error) bool {
	for _, e := range []error{unix.ENOSYS, unix.EPERM, unix.EACCES, ErrOptionsTooLong} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// noReason says where the kernel's reason for a refusal may be, when it
// gave none here and its log could not be read: dmesg for a user who may
// read the log (kernel.dmesg_restrict = 0), the log alone for anyone else.
func noReason() string {
	if b, err := os.ReadFile("/proc/sys/kernel/dmesg_restrict"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return "no reason given here; the kernel log may have one: dmesg | grep overlayfs"
	}
	return "no reason given here; the kernel log, which only root may read here, may have one"
}

// fallback tries the ways to mount, newest first. Whatever the new mount
// API refuses as such a kernel or policy does (see refusedAPI), mount(2)
// is tried before the mount is declared impossible.
func (m mounter) fallback(spec layer.Spec, opts []option) error {
	err := m.newAPI(spec, opts, lowerdirPlus)
	if err == nil {
		return nil
	}
	why, ok := refusedAPI(err)
	if !ok {
		return err
	}
	slog.Debug("native: the new mount API refused the stack, using "+why.next(spec), "target", spec.Target, "why", why, "err", err)
	if why == noLowerdirPlus && len(layer.JoinLowerdir(spec.Lowers, nil)) <= maxFsconfigString {
		return m.newAPI(spec, opts, lowerdirString)
	}
	lerr := m.legacy(spec, opts)
	if lerr == nil {
		return nil
	}
	// Both refused: mount(2)'s refusal is the one that counts, and says
	// what the new API answered first (with the kernel's words, if any).
	var first, me *MountError
	if errors.As(err, &first) && errors.As(lerr, &me) {
		me.Step += fmt.Sprintf(" (after %s: %v, %s)", first.Step, first.Err, why)
		me.Kernel = append(first.Kernel, me.Kernel...)
	}
	return lerr
}

// apiRefusal says how the new mount API refused a stack in a way that
// mount(2) may not.
type apiRefusal int

const (
	// noMountAPI: a call is missing (ENOSYS): before Linux 5.2, or a
	// seccomp profile that does not know it.
	noMountAPI apiRefusal = iota + 1
	// apiBlocked: a call is refused (EPERM, EACCES) by a security policy
	// that blocks the new API and may allow mount(2).
	apiBlocked
	// noLowerdirPlus: the first "lowerdir+" is refused: overlay's own
	// option parser without it (Linux 6.5 to 6.7).
	noLowerdirPlus
	// legacyParser: "lowerdir+" taken, then EINVAL at a later one (the
	// accumulated options pass a page) or at create: overlay's legacy
	// option parser (Linux 5.2 to 6.4), which knows no "lowerdir+".
	legacyParser
)

func (r apiRefusal) String() string {
	switch r {
	case noMountAPI:
		return "no new mount API here (before Linux 5.2, or a seccomp profile without it)"
	case apiBlocked:
		return "the new mount API is refused here (EPERM to a caller who may mount: a security policy such as a seccomp filter)"
	case noLowerdirPlus:
		return "no lowerdir+ (Linux 6.8+)"
	case legacyParser:
		return "tried in case overlay parses its options the legacy way, as Linux 5.2-6.4 do, refusing lowerdir+"
	}
	return "not refused"
}

// next says which way is tried after r.
func (r apiRefusal) next(spec layer.Spec) string {
	if r == noLowerdirPlus && len(layer.JoinLowerdir(spec.Lowers, nil)) <= maxFsconfigString {
		return "one lowerdir string"
	}
	return "mount(2)"
}

// refusedAPI reports whether err, from newAPI with lowerdir+, is the new
// mount API refusing itself rather than the kernel refusing the stack,
// and how. A refusal of the stack (ELOOP for nested layers, ENOENT, an
// upper the kernel will not take) would be given by mount(2) as well.
func refusedAPI(err error) (apiRefusal, bool) {
	var se *stepError
	if !errors.As(err, &se) {
		return 0, false
	}
	switch {
	case errors.Is(err, unix.ENOSYS):
		return noMountAPI, true
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		// Refused to a caller who may mount (root, or root of its user
		// namespace): a policy. Anyone else is refused mount(2) too.
		return apiBlocked, !unprivileged() || userns.InUserNamespace()
	case !errors.Is(err, unix.EINVAL):
		return 0, false
	case se.step == stepLower && se.index == 0:
		return noLowerdirPlus, true
	case se.step == stepLower || se.step == stepCreate:
		return legacyParser, true
	}
	return 0, false
}

// apiStep is the part of a mount through the new API that failed.
type apiStep int

const (
	stepOpen apiStep = iota + 1
	stepLower
	stepConfig // upperdir, workdir, options
	stepCreate
	stepMount // fsmount, move_mount
)

// stepError is a *MountError from the new API, with the step it failed
// at, for refusedAPI.
type stepError struct {
	*MountError
	step  apiStep
	index int // which lower, for stepLower
}

func (e *stepError) Unwrap() error { return e.MountError }

func at(step apiStep, index int, err error) error {
	var me *MountError
	if err == nil || !errors.As(err, &me) {
		return err
	}
	return &stepError{MountError: me, step: step, index: index}
}

// newAPI mounts spec with fsopen, fsconfig, fsmount and move_mount.
func (m mounter) newAPI(spec layer.Spec, opts []option, mode lowerMode) error {
	c, err := m.openContext(spec)
	if err != nil {
		return at(stepOpen, 0, err)
	}
	defer c.close()
	switch mode {
	case lowerdirPlus:
		for i, l := range spec.Lowers {
			if err := c.setPath("lowerdir+", l, false); err != nil {
				return at(stepLower, i, err)
			}
		}
	case lowerdirString:
		if err := c.setString("lowerdir", layer.JoinLowerdir(spec.Lowers, nil)); err != nil {
			return at(stepLower, 0, err)
		}
	}
	if spec.Upper != "" {
		if err := c.setPath("upperdir", spec.Upper, true); err != nil {
			return at(stepConfig, 0, err)
		}
		if err := c.setPath("workdir", spec.Work, true); err != nil {
			return at(stepConfig, 0, err)
		}
	}
	for _, o := range opts {
		var err error
		if o.value == "" {
			err = c.config("fsconfig "+o.key, func() error { return unix.FsconfigSetFlag(c.fd, o.key) })
		} else {
			err = c.setString(o.key, o.value)
		}
		if err != nil {
			return at(stepConfig, 0, err)
		}
	}
	if err := c.config("create", func() error { return m.create(c.fd) }); err != nil {
		return at(stepCreate, 0, err)
	}
	attr := 0
	if !spec.Writable() {
		attr |= unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(c.fd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return at(stepMount, 0, c.fail("fsmount", err))
	}
	// Closing mfd without moving it drops the detached mount, so a
	// failed move leaves nothing behind.
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, spec.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return at(stepMount, 0, c.fail("move_mount", err))
	}
	return nil
}

// fsContext is an overlay filesystem context being configured: the
// fsopen descriptor, and the O_PATH descriptors of layers passed by
// descriptor, which must stay open until the superblock is created.
type fsContext struct {
	m     mounter
	fd    int
	spec  layer.Spec
	paths []int
}

func (m mounter) openContext(spec layer.Spec) (*fsContext, error) {
	fd, err := m.fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, &MountError{Stack: describe(spec), Target: spec.Target, Step: "fsopen overlay", Err: err}
	}
	return &fsContext{m: m, fd: fd, spec: spec}, nil
}

func (c *fsContext) close() {
	for _, fd := range c.paths {
		unix.Close(fd)
	}
	unix.Close(c.fd)
}

// config runs one fsconfig call; on failure the error names step and
// carries the kernel's messages.
func (c *fsContext) config(step string, call func() error) error {
	if err := call(); err != nil {
		return c.fail(step, err)
	}
	return nil
}

func (c *fsContext) setString(key, value string) error {
	step := "fsconfig " + key + "=" + value
	if len(value) > maxFsconfigString {
		return &MountError{Stack: describe(c.spec), Target: c.spec.Target, Step: step,
			Err: fmt.Errorf("%w: value is %d bytes, fsconfig takes at most %d", unix.EINVAL, len(value), maxFsconfigString)}
	}
	return c.config(step, func() error { return c.m.setString(c.fd, key, value) })
}

// setPath gives the kernel the directory path for key. A path fsconfig
// cannot take as a string (over 255 bytes) is passed as an O_PATH
// descriptor (Linux 6.13+ for overlay), or else as its /proc/self/fd
// name. escaped says the kernel unescapes this key's value (upperdir,
// workdir) and lowerdir+ does not.
func (c *fsContext) setPath(key, path string, escaped bool) error {
	step := "fsconfig " + key + " " + path
	value := path
	if escaped {
		value = layer.EscapeOption(path)
	}
	if len(value) <= maxFsconfigString {
		return c.config(step, func() error { return c.m.setString(c.fd, key, value) })
	}
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &MountError{Stack: describe(c.spec), Target: c.spec.Target, Step: "open " + path, Err: err}
	}
	c.paths = append(c.paths, pfd)
	err = unix.FsconfigSetFd(c.fd, key, pfd)
	if errors.Is(err, unix.EINVAL) {
		c.drainLog() // the refusal of a descriptor is not the story
		err = c.m.setString(c.fd, key, "/proc/self/fd/"+strconv.Itoa(pfd))
	}
	if err != nil {
		return c.fail(step, err)
	}
	return nil
}

func (c *fsContext) fail(step string, err error) error {
	return &MountError{Stack: describe(c.spec), Target: c.spec.Target, Step: step, Err: err, Kernel: c.drainLog()}
}

// drainLog reads the messages the kernel left in the fs context: each
// read(2) returns one line, "e overlayfs: ..." for errors, "w " warnings,
// "i " information, until ENODATA.
func (c *fsContext) drainLog() []string {
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(c.fd, buf)
		if err != nil || n <= 0 {
			return msgs
		}
		line := strings.TrimSpace(string(buf[:n]))
		if len(line) > 2 && line[1] == ' ' && strings.ContainsRune("ewi", rune(line[0])) {
			line = line[2:]
		}
		msgs = append(msgs, line)
	}
}

// legacy mounts spec with mount(2) and escaped options, for kernels
// without fsopen (before 5.2) or where the new API is refused. The
// kernel reads one page of options: a stack whose paths do not fit is
// mounted by descriptor (legacyByFd). The kernel's reason for a refusal
// only goes to its log (see kmsgCursor).
func (m mounter) legacy(spec layer.Spec, opts []option) error {
	var flags uintptr
	if !spec.Writable() {
		flags |= unix.MS_RDONLY
	}
	data, err := legacyData(spec, opts)
	if errors.Is(err, ErrOptionsTooLong) {
		slog.Debug("native: mount(2) options over a page, naming the layers by descriptor", "target", spec.Target, "layers", len(spec.Lowers))
		return legacyByFd(spec, opts, flags)
	}
	if err != nil {
		return &MountError{Stack: describe(spec), Target: spec.Target, Step: "mount(2) options", Err: err}
	}
	if err := unix.Mount("overlay", spec.Target, "overlay", flags, data); err != nil {
		return &MountError{Stack: describe(spec), Target: spec.Target, Step: "mount(2)", Err: err}
	}
	return nil
}

// fdDir is where a descriptor of this process is a path: the number
// alone, from a working directory there.
const fdDir = "/proc/self/fd"

// legacyByFd mounts spec with mount(2), its directories named by
// descriptor, as containers/storage names its layers relative to a
// working directory: each layer is opened O_PATH, and the mount is made
// from a thread of its own whose working directory is /proc/self/fd, so
// that "lowerdir=12:13:14" names the layers (the kernel resolves
// relative option paths from the mounting thread's working directory,
// and follows the descriptor links). 500 layers take some 2,500 bytes
// that way, whatever their paths. The thread ends with the mount
// (runtime.LockOSThread without unlock), taking its working directory
// with it: the process's stays where it was. /proc/self/mountinfo then
// shows the descriptor numbers as the layers' paths.
func legacyByFd(spec layer.Spec, opts []option, flags uintptr) error {
	fail := func(step string, err error) error {
		return &MountError{Stack: describe(spec), Target: spec.Target, Step: step, Err: err}
	}
	byFd := spec
	byFd.Lowers = make([]string, len(spec.Lowers))
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	open := func(p string) (string, error) {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fail("open "+p, err)
		}
		fds = append(fds, fd)
		return strconv.Itoa(fd), nil
	}
	var err error
	for i, l := range spec.Lowers {
		if byFd.Lowers[i], err = open(l); err != nil {
			return err
		}
	}
	if spec.Upper != "" {
		if byFd.Upper, err = open(spec.Upper); err != nil {
			return err
		}
		if byFd.Work, err = open(spec.Work); err != nil {
			return err
		}
	}
	data, err := legacyData(byFd, opts)
	if err != nil {
		return fail("mount(2) options", err)
	}
	target := spec.Target
	if !strings.HasPrefix(target, "/") {
		if target, err = open(spec.Target); err != nil {
			return err
		}
		target = fdDir + "/" + target
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread and its working directory end here
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fail("unshare the working directory", err)
			return
		}
		if err := unix.Chdir(fdDir); err != nil {
			done <- fail("chdir "+fdDir, err)
			return
		}
		if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
			done <- fail("mount(2), layers by descriptor", err)
			return
		}
		done <- nil
	}()
	return <-done
}
