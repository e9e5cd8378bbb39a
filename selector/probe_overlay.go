package selector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// overlayProber runs the kernel overlay probes in the current mount
// namespace: for root the caller's, for an ordinary user the new user
// namespace the probe entry runs in. Each probe mounts through mount,
// the native backend, so a "yes" means ovl's own code path works.
type overlayProber struct {
	dir   string          // the layer directory; each probe makes a sandbox in it
	ns    layer.Namespace // trusted for real root, user in a user namespace
	mount func(context.Context, layer.Spec) (backend.Mount, error)
}

// stack is a small layer stack in a sandbox: two lowers with known
// files, an upper, a work dir and a target.
type stack struct {
	lowers           []string
	upper, work, mnt string
}

// newStack fills a sandbox: the top lower has "top", "d/a" and a
// whiteout of "d/hidden" written by the layer package as layers written
// here get them (layer.MakeWhiteout: a 0/0 device, or an xattr whiteout
// where mknod is refused; in a directory below the layer's root, where
// the kernel looks for xattr whiteouts only in directories marked for
// them), the bottom lower "bottom", "gone", "d/hidden", "d/b" and
// "opq/x".
func newStack(s *sandbox, ns layer.Namespace) (*stack, error) {
	st := &stack{}
	var err error
	mk := func(name string) string {
		var p string
		if err == nil {
			p, err = s.dir(name)
		}
		return p
	}
	top, bottom := mk("l0"), mk("l1")
	st.upper, st.work, st.mnt = mk("u"), mk("w"), mk("m")
	if err != nil {
		return nil, err
	}
	if err := s.files(top, "top", "d/a"); err != nil {
		return nil, err
	}
	if err := s.files(bottom, "bottom", "gone", hiddenName, "d/b", "opq/x"); err != nil {
		return nil, err
	}
	fd, err := unix.Open(filepath.Join(top, filepath.Dir(hiddenName)), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := layer.MakeWhiteout(fd, filepath.Base(hiddenName), ns); err != nil {
		return nil, err
	}
	st.lowers = []string{top, bottom}
	return st, nil
}

// hiddenName is the bottom layer's file that a whiteout in the top one
// hides (newStack).
const hiddenName = "d/hidden"

// expectHidden checks that the whiteout newStack wrote in the top layer
// hides its name in the merged tree at mnt, to lookup and readdir alike:
// kernel overlay reads the whiteouts layers get here. Linux before 6.7
// shows an xattr whiteout as an empty file (6.7+ too where its directory
// lacks the overlay.opaque = "x" mark, in readdir).
func expectHidden(mnt string) error {
	_, err := os.Lstat(filepath.Join(mnt, hiddenName))
	switch {
	case err == nil:
		return errXattrWhiteoutsUnread
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	entries, err := os.ReadDir(filepath.Join(mnt, filepath.Dir(hiddenName)))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == filepath.Base(hiddenName) {
			return errXattrWhiteoutsUnread // listed, though lookup hides it
		}
	}
	return nil
}

// errXattrWhiteoutsUnread reports a kernel that shows a layer's xattr
// whiteout as a file (before Linux 6.7).
var errXattrWhiteoutsUnread = errors.New("a whiteout written in a layer here shows as a file through kernel overlay: layers here get xattr whiteouts (mknod of a 0/0 device is refused), which kernel overlay reads from Linux 6.7")

func (st *stack) spec(ns layer.Namespace, writable bool, o layer.Options) layer.Spec {
	sp := layer.Spec{Lowers: st.lowers, Target: st.mnt, Namespace: ns, Options: o}
	if writable {
		sp.Upper, sp.Work = st.upper, st.work
	}
	return sp
}

// withMount mounts a fresh sandbox stack with the prober's mount; see
// withStackMount.
func (p *overlayProber) withMount(ctx context.Context, probe string, writable bool, ns layer.Namespace, o layer.Options,
	inside func(st *stack) error, after func(st *stack) error) error {
	return withStackMount(ctx, p.dir, probe, p.mount, writable, ns, o, inside, after)
}

// withStackMount makes a sandbox for probe in dir with a fresh stack,
// mounts it with mount, runs inside on the merged tree, unmounts, then
// runs after on the upper dir. Either may be nil. Every probe that
// mounts through a backend goes through it, so each cleans up the same
// way.
func withStackMount(ctx context.Context, dir, probe string, mount func(context.Context, layer.Spec) (backend.Mount, error),
	writable bool, ns layer.Namespace, o layer.Options, inside func(st *stack) error, after func(st *stack) error) error {
	s, err := newSandbox(dir, probe)
	if err != nil {
		return err
	}
	defer s.remove()
	st, err := newStack(s, ns)
	if err != nil {
		return s.relative(fmt.Errorf("set up layers: %w", err))
	}
	s.mounted(st.mnt)
	m, err := mount(ctx, st.spec(ns, writable, o))
	if err != nil {
		return s.relative(err)
	}
	if inside != nil {
		err = inside(st)
	}
	if uerr := unmountProbe(m, st.mnt); uerr != nil && err == nil {
		err = fmt.Errorf("unmount: %w", uerr)
	}
	if err == nil && after != nil {
		err = after(st)
	}
	return s.relative(err)
}

// relative returns err with the paths inside the sandbox in its message
// made relative to it ("l0", "u", "m"): the sandbox is gone by the time
// anyone reads a probe's answer. errors.Is and errors.As see err.
func (s *sandbox) relative(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), s.root+"/", "")
	msg = strings.ReplaceAll(msg, s.root, "the probe's scratch dir")
	if msg == err.Error() {
		return err
	}
	return &relativeError{msg: msg, err: err}
}

// relativeError is an error whose message names paths relative to a
// probe's sandbox.
type relativeError struct {
	msg string
	err error
}

func (e *relativeError) Error() string { return e.msg }
func (e *relativeError) Unwrap() error { return e.err }

// unmountProbe unmounts a probe's stack. A process forked meanwhile by a
// parallel probe can hold the mount for an instant (between its fork and
// exec); backend.Unmount waits that out, and a mount still busy then is
// detached lazily: the probe's question was answered, and a busy moment
// must not be cached as "overlay does not work here".
func unmountProbe(m backend.Mount, target string) error {
	err := m.Unmount()
	if !errors.Is(err, unix.EBUSY) {
		return err
	}
	slog.Debug("probe: mount still busy, detaching it", "target", target, "err", err)
	return backend.Unmount(target, true)
}

func how(ns layer.Namespace) string {
	if ns == layer.User {
		if !userns.Privileged() {
			return "in a user namespace, userxattr"
		}
		return "userxattr"
	}
	return "as root, trusted.overlay xattrs"
}

// supportsNative mounts one stack the way the native backend will for
// this user and checks that a whiteout written in a lower as layers here
// get them hides its name, and that a write through the mount lands in
// the upper. A kernel that cannot read the whiteouts layers get here
// (xattr whiteouts, before Linux 6.7) answers no, with why: native would
// show files deleted in those layers.
func (p *overlayProber) supportsNative(ctx context.Context) (bool, string, error) {
	err := p.withMount(ctx, ProbeNative, true, p.ns, layer.Options{},
		func(st *stack) error {
			if err := readIs(filepath.Join(st.mnt, "bottom"), "bottom"); err != nil {
				return err
			}
			if err := expectHidden(st.mnt); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(st.mnt, "new"), []byte("new"), 0o644)
		},
		func(st *stack) error { return readIs(filepath.Join(st.upper, "new"), "new") })
	if errors.Is(err, errXattrWhiteoutsUnread) {
		return false, "Linux 6.7+ reads the xattr whiteouts layers get here", err
	}
	return err == nil, how(p.ns), err
}

// supportsUserxattr mounts with userxattr and checks that an opaque dir
// made through the mount is marked with user.overlay.opaque.
func (p *overlayProber) supportsUserxattr(ctx context.Context) (bool, string, error) {
	err := p.withMount(ctx, ProbeUserxattr, true, layer.User, layer.Options{},
		func(st *stack) error { return recreateDir(st.mnt, "opq") },
		func(st *stack) error {
			buf := make([]byte, 8)
			n, err := unix.Lgetxattr(filepath.Join(st.upper, "opq"), layer.User.Xattr(layer.KeyOpaque), buf)
			if err != nil {
				return fmt.Errorf("%s on the recreated dir: %w", layer.User.Xattr(layer.KeyOpaque), err)
			}
			if string(buf[:n]) != "y" {
				return fmt.Errorf("%s is %q, want \"y\"", layer.User.Xattr(layer.KeyOpaque), buf[:n])
			}
			return nil
		})
	return err == nil, how(layer.User), err
}

// supportsTwoLowers mounts the two lowers read-only and checks both show,
// and that a directory in both merges.
func (p *overlayProber) supportsTwoLowers(ctx context.Context) (bool, string, error) {
	err := p.withMount(ctx, ProbeTwoLowers, false, p.ns, layer.Options{},
		func(st *stack) error {
			for _, f := range []string{"top", "bottom", "d/a", "d/b"} {
				if err := readIs(filepath.Join(st.mnt, f), f); err != nil {
					return err
				}
			}
			return expectHidden(st.mnt)
		}, nil)
	return err == nil, "", err
}

// supportsWhiteout removes a lower file through the mount and checks the
// upper then holds a whiteout for it.
func (p *overlayProber) supportsWhiteout(ctx context.Context) (bool, string, error) {
	err := p.withMount(ctx, ProbeWhiteout, true, p.ns, layer.Options{},
		func(st *stack) error {
			if err := os.Remove(filepath.Join(st.mnt, "gone")); err != nil {
				return err
			}
			if _, err := os.Lstat(filepath.Join(st.mnt, "gone")); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removed file still visible through the mount (lstat: %v)", err)
			}
			return nil
		},
		func(st *stack) error { return expectWhiteout(st.upper, "gone") })
	return err == nil, "", err
}

// supportsOpaqueDir removes a lower directory through the mount, makes it
// again, and checks the upper directory is opaque.
func (p *overlayProber) supportsOpaqueDir(ctx context.Context) (bool, string, error) {
	err := p.withMount(ctx, ProbeOpaque, true, p.ns, layer.Options{},
		func(st *stack) error {
			if err := recreateDir(st.mnt, "opq"); err != nil {
				return err
			}
			if _, err := os.Lstat(filepath.Join(st.mnt, "opq", "x")); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("lower file shows in the recreated dir (lstat: %v)", err)
			}
			return nil
		},
		func(st *stack) error {
			fd, err := unix.Open(filepath.Join(st.upper, "opq"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open the recreated dir in the upper: %w", err)
			}
			defer unix.Close(fd)
			op, err := layer.DirOpacity(fd)
			if err != nil {
				return err
			}
			if op != layer.OpaqueDir {
				return fmt.Errorf("the recreated dir in the upper is not opaque")
			}
			return nil
		})
	return err == nil, "", err
}

// feature is an optional overlay feature and, where a mount alone does
// not prove it, what to do through the mount and check afterwards.
type feature struct {
	probe  string
	opts   layer.Options
	inside func(st *stack) error
	after  func(ns layer.Namespace, st *stack) error
}

var features = []feature{
	{probe: ProbeVolatile, opts: layer.Options{Volatile: true}},
	{probe: ProbeIndex, opts: layer.Options{Index: true}},
	{probe: ProbeXino, opts: layer.Options{Xino: true}},
	{probe: ProbeRedirectDir, opts: layer.Options{RedirectDir: true},
		// Without redirect_dir the kernel refuses to rename a lower dir (EXDEV).
		inside: func(st *stack) error { return os.Rename(filepath.Join(st.mnt, "d"), filepath.Join(st.mnt, "d2")) }},
	// metacopy needs redirect_dir: the kernel refuses metacopy=on with
	// redirect_dir=off ("conflicting options").
	{probe: ProbeMetacopy, opts: layer.Options{Metacopy: true, RedirectDir: true},
		inside: func(st *stack) error { return os.Chmod(filepath.Join(st.mnt, "bottom"), 0o600) },
		after: func(ns layer.Namespace, st *stack) error {
			_, err := unix.Lgetxattr(filepath.Join(st.upper, "bottom"), ns.Xattr(layer.KeyMetacopy), nil)
			if err != nil {
				return fmt.Errorf("chmod copied the whole file up (no %s): %w", ns.Xattr(layer.KeyMetacopy), err)
			}
			return nil
		}},
}

// supportsFeature mounts with f's option on and checks what proves it.
func (p *overlayProber) supportsFeature(ctx context.Context, f feature) (bool, string, error) {
	var after func(*stack) error
	if f.after != nil {
		after = func(st *stack) error { return f.after(p.ns, st) }
	}
	err := p.withMount(ctx, f.probe, true, p.ns, f.opts, f.inside, after)
	detail := ""
	if err != nil && p.ns == layer.User && (f.probe == ProbeRedirectDir || f.probe == ProbeMetacopy) {
		detail = "userxattr turns it off"
	}
	return err == nil, detail, err
}

// supportsLowerdirPlus builds an overlay with the new mount API, one
// "lowerdir+" per layer (Linux 6.8+), and reads a file from the bottom
// layer of the detached mount. Where the new API refuses it as an older
// kernel or a security policy does, the answer is an expected "no" that
// says which (native then mounts with mount(2), its layers by descriptor
// when their paths pass a page).
func (p *overlayProber) supportsLowerdirPlus(ctx context.Context) (bool, string, error) {
	s, err := newSandbox(p.dir, ProbeLowerdirPlus)
	if err != nil {
		return false, "", err
	}
	defer s.remove()
	st, err := newStack(s, p.ns)
	if err != nil {
		return false, "", s.relative(err)
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	switch {
	case errors.Is(err, unix.ENOSYS):
		return false, "no new mount API (Linux 5.2+), or a seccomp profile without it: mount(2) is used", nil
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return false, fmt.Sprintf("fsopen refused (%v): a security policy blocks the new mount API; mount(2) is used", err), nil
	case err != nil:
		return false, "", fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for i, l := range st.lowers {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			if errors.Is(err, unix.EINVAL) && i == 0 {
				return false, "the kernel has no lowerdir+ (Linux 6.8+): one lowerdir string is used", nil
			}
			return false, "", s.relative(fmt.Errorf("fsconfig lowerdir+ %s: %w%s", l, err, fsMessages(fsfd)))
		}
	}
	if p.ns == layer.User {
		if err := unix.FsconfigSetFlag(fsfd, "userxattr"); err != nil {
			return false, "", fmt.Errorf("fsconfig userxattr: %w%s", err, fsMessages(fsfd))
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		msgs := fsMessages(fsfd)
		if errors.Is(err, unix.EINVAL) && msgs == "" {
			return false, "lowerdir+ taken, then refused at create without a word: overlay's legacy option parser (Linux 5.2-6.4); mount(2) is used", nil
		}
		return false, "", s.relative(fmt.Errorf("fsconfig create: %w%s", err, msgs))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return false, "", fmt.Errorf("fsmount: %w%s", err, fsMessages(fsfd))
	}
	defer unix.Close(mfd) // the mount is detached: closing it is the unmount
	f, err := unix.Openat(mfd, "bottom", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, "", fmt.Errorf("read through the mount: %w", err)
	}
	unix.Close(f)
	return true, "", nil
}

// fsMessages reads the kernel's messages from an fsopen context ("e
// overlayfs: ..."), to append to an error.
func fsMessages(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for i := 0; i < 8; i++ {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (kernel: " + strings.Join(msgs, "; ") + ")"
}

// supportsMknodWhiteout makes a 0/0 character device, the kernel's
// whiteout, in a scratch dir (layer.ProbeWhiteouts). A "no" is expected
// where one cannot be kept there, and says what refused it; layers
// written there get the kernel's xattr whiteouts instead (Whiteouts).
func (p *overlayProber) supportsMknodWhiteout(ctx context.Context) (bool, string, error) {
	s, err := newSandbox(p.dir, ProbeMknod)
	if err != nil {
		return false, "", err
	}
	defer s.remove()
	fd, err := unix.Open(s.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, "", err
	}
	defer unix.Close(fd)
	w, why, err := layer.ProbeWhiteouts(fd)
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", s.root, err)
	}
	return w == layer.DeviceWhiteouts, why, nil
}

// Whiteouts says which whiteouts layers written in the probed layer
// directory get (the mknod probe): 0/0 character devices, or the kernel's
// xattr whiteouts and why.
func (r *Report) Whiteouts() string {
	m := r.Get(ProbeMknod)
	if m.OK {
		return layer.DeviceWhiteouts.String()
	}
	if m.Error != "" {
		return "unknown: " + m.String()
	}
	return layer.XattrWhiteouts.String() + ": " + m.Detail
}

// expectWhiteout checks that name in dir is a whiteout (layer.Classify).
func expectWhiteout(dir, name string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	op, err := layer.DirOpacity(fd)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("no whiteout for %s in %s: %w", name, dir, err)
	}
	if k, _ := layer.Classify(fd, name, &st, op); k != layer.Whiteout {
		return fmt.Errorf("%s in %s is a %v entry, not a whiteout (mode %o)", name, dir, k, st.Mode)
	}
	return nil
}

// recreateDir empties and removes dir/name through a mount, then makes
// it again.
func recreateDir(dir, name string) error {
	p := filepath.Join(dir, name)
	if err := os.RemoveAll(p); err != nil {
		return err
	}
	return os.Mkdir(p, 0o755)
}

func readIs(path, want string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("%s holds %q, want %q", path, b, want)
	}
	return nil
}
