// Package kernelsim makes this kernel look, to one process tree, like an
// older or locked-down kernel, so that tests can run ovl where it must
// fall back: a seccomp filter makes the system calls such a kernel lacks
// or refuses fail as they fail there, and a mount namespace of its own
// hides /dev/fuse.
//
// A Kernel is one simulated difference; several combine. A test runs a
// command under them with Command, or wraps a command line (the rerun of
// a test as uid 65534, testutil.RunAsNobodyWrapped) with Wrap. Both
// start this test binary again, which enters the simulation from this
// package's init (before TestMain) and executes the command: any test
// binary that imports kernelsim can do it. The filter is inherited by
// every process the command starts and survives its setuid: it is
// installed by root without no_new_privs, so a set-user-ID fusermount3
// still works under it, as on the kernels it models.
//
// What a seccomp filter cannot do, and so what is approximated, is said
// on each Kernel: it sees system call numbers and integer arguments, not
// strings or the structures arguments point to, and cannot change what
// uname reports (6.18 here).
package kernelsim

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Kernel is one difference of a simulated kernel from this one.
type Kernel struct {
	// Name is short and stable, for test names and the wrapper's
	// argument: "no-mount-api".
	Name string
	// Models says what the simulation stands for, and where it only
	// approximates it.
	Models string
	// Feature names what the simulated kernel lacks, in a user's words,
	// for tables and messages.
	Feature string
	rules   []rule
	// noDevFuse runs the command in a mount namespace whose /dev has no
	// fuse node.
	noDevFuse bool
}

// fsconfigCreateExcl is FSCONFIG_CMD_CREATE_EXCL (Linux 6.6), not in x/sys.
const fsconfigCreateExcl = 8

// The simulated kernels. Each changes one thing; Combine joins them.
var (
	// NoMountAPI has no new mount API: fsopen, fsconfig, fsmount,
	// fspick, move_mount, open_tree and mount_setattr fail with ENOSYS,
	// as before Linux 5.2 (mount_setattr: 5.12), or under a seccomp
	// profile that does not know them.
	NoMountAPI = Kernel{
		Name:    "no-mount-api",
		Feature: "new mount API (fsopen, Linux 5.2)",
		Models:  "Linux before 5.2, or a seccomp profile without the new mount API: fsopen, fsconfig, fsmount, fspick, move_mount, open_tree and mount_setattr fail with ENOSYS",
		rules: []rule{
			{nr: unix.SYS_FSOPEN, errno: unix.ENOSYS}, {nr: unix.SYS_FSCONFIG, errno: unix.ENOSYS},
			{nr: unix.SYS_FSMOUNT, errno: unix.ENOSYS}, {nr: unix.SYS_FSPICK, errno: unix.ENOSYS},
			{nr: unix.SYS_MOVE_MOUNT, errno: unix.ENOSYS}, {nr: unix.SYS_OPEN_TREE, errno: unix.ENOSYS},
			{nr: unix.SYS_MOUNT_SETATTR, errno: unix.ENOSYS},
		},
	}
	// LegacyParser has the new mount API, but overlay parses its options
	// with the legacy parser, as Linux 5.2 to 6.4 do: fsconfig takes any
	// string, "lowerdir+" included, and the mount fails when the
	// superblock is made, at FSCONFIG_CMD_CREATE, with EINVAL; a value
	// given by descriptor (FSCONFIG_SET_FD) is refused with EINVAL. The
	// filter cannot see fsconfig's key, so it fails every create, not
	// only those of a context that got a "lowerdir+" (on those kernels a
	// context given one "lowerdir" string of at most 255 bytes mounts):
	// no overlay mounts through the new mount API here. The filter does
	// not model the legacy parser's one-page limit on what fsconfig
	// accumulates either (EINVAL at the fsconfig that passes it).
	LegacyParser = Kernel{
		Name:    "legacy-parser",
		Feature: "lowerdir+ (Linux 6.8; overlay's own option parser, 6.5)",
		Models:  "Linux 5.2-6.4: overlay's legacy option parser; FSCONFIG_CMD_CREATE fails with EINVAL (every one: the filter cannot see which got lowerdir+), FSCONFIG_SET_FD with EINVAL",
		rules: []rule{
			{nr: unix.SYS_FSCONFIG, errno: unix.EINVAL, conds: []cond{argEq(1, unix.FSCONFIG_CMD_CREATE)}},
			{nr: unix.SYS_FSCONFIG, errno: unix.EINVAL, conds: []cond{argEq(1, fsconfigCreateExcl)}},
			{nr: unix.SYS_FSCONFIG, errno: unix.EINVAL, conds: []cond{argEq(1, unix.FSCONFIG_SET_FD)}},
		},
	}
	// FsopenBlocked refuses fsopen with EPERM, as a security policy that
	// blocks the new mount API (rather than lacking it) does: Docker's
	// default seccomp profile before it allowed fsopen.
	FsopenBlocked = Kernel{
		Name:    "fsopen-eperm",
		Feature: "fsopen (blocked by a security policy)",
		Models:  "a seccomp policy that blocks the new mount API: fsopen fails with EPERM",
		rules:   []rule{{nr: unix.SYS_FSOPEN, errno: unix.EPERM}},
	}
	// NoUserns refuses new user namespaces: unshare and clone with
	// CLONE_NEWUSER fail with EPERM, as with user.max_user_namespaces=0
	// (which refuses root too) or, for ordinary users,
	// kernel.unprivileged_userns_clone=0 (Debian, older Ubuntu). clone3
	// fails with ENOSYS, since the filter cannot read its flags, so that
	// callers fall back to clone (as under Docker's default profile).
	NoUserns = Kernel{
		Name:    "no-userns",
		Feature: "user namespaces (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)",
		Models:  "user namespaces off (user.max_user_namespaces=0, or kernel.unprivileged_userns_clone=0): unshare/clone with CLONE_NEWUSER fail with EPERM, clone3 with ENOSYS",
		rules: []rule{
			{nr: unix.SYS_UNSHARE, errno: unix.EPERM, conds: []cond{argMask(0, unix.CLONE_NEWUSER, unix.CLONE_NEWUSER)}},
			{nr: unix.SYS_CLONE, errno: unix.EPERM, conds: []cond{argMask(0, unix.CLONE_NEWUSER, unix.CLONE_NEWUSER)}},
			{nr: unix.SYS_CLONE3, errno: unix.ENOSYS},
		},
	}
	// NoMknod refuses to make a 0/0 character device, the kernel's
	// whiteout, with EPERM: mknod(at) of one, and renameat2 with
	// RENAME_WHITEOUT (which makes one), as for an ordinary user before
	// Linux 5.8 (also in a user namespace). Overlay's own whiteouts, made
	// inside the kernel, are not affected.
	NoMknod = Kernel{
		Name:    "no-mknod",
		Feature: "0/0 whiteout devices for ordinary users (Linux 5.8)",
		Models:  "an ordinary user before Linux 5.8: mknod of a 0/0 character device and renameat2(RENAME_WHITEOUT) fail with EPERM",
		rules:   mknodRules(),
	}
	// NoDevFuse has no /dev/fuse: the command runs in a mount namespace
	// of its own whose /dev lacks the node (the fuse module not loaded,
	// or a container run without --device /dev/fuse); its mounts stay in
	// that namespace.
	NoDevFuse = Kernel{
		Name:      "no-dev-fuse",
		Feature:   "/dev/fuse (the fuse module)",
		Models:    "no /dev/fuse: a mount namespace whose /dev lacks the node",
		noDevFuse: true,
	}
)

// All lists the simulated kernels, one difference each.
func All() []Kernel {
	return []Kernel{NoMountAPI, LegacyParser, FsopenBlocked, NoUserns, NoMknod, NoDevFuse}
}

// Combine is a kernel with every difference of ks, named after them.
func Combine(ks ...Kernel) Kernel {
	var c Kernel
	var names, models, features []string
	for _, k := range ks {
		names = append(names, k.Name)
		models = append(models, k.Models)
		features = append(features, k.Feature)
		c.rules = append(c.rules, k.rules...)
		c.noDevFuse = c.noDevFuse || k.noDevFuse
	}
	c.Name, c.Models, c.Feature = strings.Join(names, "+"), strings.Join(models, "; "), strings.Join(features, ", ")
	return c
}

// Has reports whether k has the difference d (is it, or combines it).
func (k Kernel) Has(d Kernel) bool {
	for _, n := range strings.Split(k.Name, "+") {
		if n == d.Name {
			return true
		}
	}
	return false
}

// ByName returns the kernel of All named name, or a Combine of several
// joined with '+'.
func ByName(name string) (Kernel, error) {
	var ks []Kernel
	for _, n := range strings.Split(name, "+") {
		found := false
		for _, k := range All() {
			if k.Name == n {
				ks, found = append(ks, k), true
				break
			}
		}
		if !found {
			return Kernel{}, fmt.Errorf("kernelsim: no simulated kernel %q", n)
		}
	}
	if len(ks) == 1 {
		return ks[0], nil
	}
	return Combine(ks...), nil
}

// EnvActive names the environment variable the simulation sets for the
// command: the Name of the kernel it runs under.
const EnvActive = "OVL_KERNELSIM"

// Active returns the kernel this process runs under, and false outside a
// simulation.
func Active() (Kernel, bool) {
	name := os.Getenv(EnvActive)
	if name == "" {
		return Kernel{}, false
	}
	k, err := ByName(name)
	return k, err == nil
}

// flagPrefix starts the argument that makes a start of this binary enter
// a simulation: SELF --ovl-kernelsim=NAME -- COMMAND [ARGS...].
const flagPrefix = "--ovl-kernelsim="

// Wrap returns the start of a command line that runs the rest of it
// under k: this test binary, which enters the simulation and executes
// the command that follows. Needs root.
func Wrap(k Kernel) []string {
	return []string{"/proc/self/exe", flagPrefix + k.Name, "--"}
}

// Command returns a command that runs name with args under k (see Wrap).
func Command(k Kernel, name string, args ...string) *exec.Cmd {
	w := Wrap(k)
	return exec.Command(w[0], append(append(w[1:], name), args...)...)
}

func init() {
	if len(os.Args) < 4 || !strings.HasPrefix(os.Args[1], flagPrefix) || os.Args[2] != "--" {
		return
	}
	err := enter(strings.TrimPrefix(os.Args[1], flagPrefix), os.Args[3:])
	fmt.Fprintf(os.Stderr, "kernelsim: %v\n", err)
	os.Exit(126)
}

// enter sets up the simulation of kernel name in this process and
// executes argv; it returns only on failure.
func enter(name string, argv []string) error {
	k, err := ByName(name)
	if err != nil {
		return err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	// The mount namespace and the filter are this thread's, which then
	// executes the command.
	runtime.LockOSThread()
	if k.noDevFuse {
		if err := hideDevFuse(); err != nil {
			return fmt.Errorf("hide /dev/fuse: %w", err)
		}
	}
	if len(k.rules) > 0 {
		if err := install(k.rules); err != nil {
			return err
		}
	}
	env := append(os.Environ(), EnvActive+"="+k.Name)
	return unix.Exec(path, argv, env)
}

// install loads a filter failing rules into this process, every thread.
// As root it needs no no_new_privs, which would void set-user-ID programs
// such as fusermount3; anyone else must set it.
func install(rules []rule) error {
	prog, err := program(rules)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}

// hideDevFuse moves this thread into a new mount namespace, where mounts
// made from now on stay, and replaces /dev there with a tmpfs holding
// every entry of the real /dev (bound from it) but fuse.
func hideDevFuse() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	old, err := unix.Open("/dev", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(old)
	entries, err := os.ReadDir("/dev")
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID, "mode=755"); err != nil {
		return fmt.Errorf("mount a tmpfs on /dev: %w", err)
	}
	oldPath := fmt.Sprintf("/proc/self/fd/%d", old)
	for _, e := range entries {
		if e.Name() == "fuse" {
			continue
		}
		src, dst := filepath.Join(oldPath, e.Name()), filepath.Join("/dev", e.Name())
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
			continue
		case e.IsDir():
			if err := os.Mkdir(dst, 0o755); err != nil {
				return err
			}
		default:
			if err := os.WriteFile(dst, nil, 0o600); err != nil {
				return err
			}
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", dst, err)
		}
	}
	return nil
}
