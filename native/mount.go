package native

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

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
// that has them all.
type mounter struct {
	fsopen    func(fsName string, flags int) (int, error)
	setString func(fd int, key, value string) error
}

// kernelMounter calls the kernel.
var kernelMounter = mounter{fsopen: unix.Fsopen, setString: unix.FsconfigSetString}

// stack mounts spec, already validated, on spec.Target with opts,
// choosing the newest way the kernel supports: lowerdir+, else one
// lowerdir string, else mount(2). On error nothing is mounted.
func (m mounter) stack(spec layer.Spec, opts []option) error {
	kmsg := openKmsg()
	defer kmsg.close()
	err := m.fallback(spec, opts)
	var me *MountError
	var errno unix.Errno
	if errors.As(err, &me) {
		if lines := kmsg.overlayLines(); len(lines) > 0 {
			me.Kernel = append(me.Kernel, lines...)
		} else if len(me.Kernel) == 0 && errors.As(me.Err, &errno) && !errors.Is(err, ErrOptionsTooLong) {
			me.Kernel = []string{"no reason given here; the kernel log may have one: dmesg | grep overlayfs"}
		}
	}
	return err
}

// fallback tries the ways to mount, newest first.
func (m mounter) fallback(spec layer.Spec, opts []option) error {
	err := m.newAPI(spec, opts, lowerdirPlus)
	var me *MountError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSYS):
		slog.Debug("native: no fsopen, using mount(2)", "target", spec.Target)
		return m.legacy(spec, opts)
	case errors.As(err, &me) && me.Step == "fsconfig lowerdir+ "+spec.Lowers[0] && errors.Is(err, unix.EINVAL):
		// The first lowerdir+ refused: a kernel before 6.8.
		slog.Debug("native: no lowerdir+, using one lowerdir string", "target", spec.Target, "err", err)
		if len(layer.JoinLowerdir(spec.Lowers, nil)) > maxFsconfigString {
			return m.legacy(spec, opts)
		}
		return m.newAPI(spec, opts, lowerdirString)
	default:
		return err
	}
}

// newAPI mounts spec with fsopen, fsconfig, fsmount and move_mount.
func (m mounter) newAPI(spec layer.Spec, opts []option, mode lowerMode) error {
	c, err := m.openContext(spec)
	if err != nil {
		return err
	}
	defer c.close()
	switch mode {
	case lowerdirPlus:
		for _, l := range spec.Lowers {
			if err := c.setPath("lowerdir+", l, false); err != nil {
				return err
			}
		}
	case lowerdirString:
		if err := c.setString("lowerdir", layer.JoinLowerdir(spec.Lowers, nil)); err != nil {
			return err
		}
	}
	if spec.Upper != "" {
		if err := c.setPath("upperdir", spec.Upper, true); err != nil {
			return err
		}
		if err := c.setPath("workdir", spec.Work, true); err != nil {
			return err
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
			return err
		}
	}
	if err := c.config("create", func() error { return unix.FsconfigCreate(c.fd) }); err != nil {
		return err
	}
	attr := 0
	if !spec.Writable() {
		attr |= unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(c.fd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return c.fail("fsmount", err)
	}
	// Closing mfd without moving it drops the detached mount, so a
	// failed move leaves nothing behind.
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, spec.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return c.fail("move_mount", err)
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
// without fsopen (before 5.2) or where it is blocked. The kernel's reason
// for a refusal then only goes to its log (see kmsgCursor).
func (m mounter) legacy(spec layer.Spec, opts []option) error {
	data, err := legacyData(spec, opts)
	if err != nil {
		return &MountError{Stack: describe(spec), Target: spec.Target, Step: "mount(2) options", Err: err}
	}
	var flags uintptr
	if !spec.Writable() {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("overlay", spec.Target, "overlay", flags, data); err != nil {
		return &MountError{Stack: describe(spec), Target: spec.Target, Step: "mount(2)", Err: err}
	}
	return nil
}
