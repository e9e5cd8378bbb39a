package selector

import (
	"errors"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/userns"
)

// This file says what refused something a probe tried, in words a person
// can act on: which policy refused a namespace or a mount, and whether a
// missing /dev/fuse is a module not loaded or a container without the
// device node. The probes call it for their Detail; Choose turns the
// facts into hints.

// usernsRefusal says what refused a new user namespace, from the error
// of starting a process in one and the process's confinement.
func usernsRefusal(err error) string {
	c := userns.Confined()
	switch {
	case errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EUSERS):
		return "the limit of user namespaces is reached (user.max_user_namespaces)"
	case !errors.Is(err, unix.EPERM):
		return ""
	case readSysctl("kernel/unprivileged_userns_clone") == "0":
		return "the kernel forbids unprivileged user namespaces (kernel.unprivileged_userns_clone = 0)"
	case readSysctl("kernel/apparmor_restrict_unprivileged_userns") == "1":
		return "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)"
	case c.Seccomp && c.Container != "":
		return "the " + c.Container + " container's seccomp filter forbids new namespaces (Docker's default profile does)"
	case c.Seccomp:
		return "a seccomp filter forbids new namespaces"
	}
	return "refused (EPERM)"
}

// NamespaceRefusal says what refused new namespaces, from the error of
// starting a process in them (a seccomp filter, a sysctl, the limit of
// user namespaces), or "" when it cannot tell: for the runner's messages.
func NamespaceRefusal(err error) string {
	if !userns.CanMount() || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EUSERS) {
		return usernsRefusal(err)
	}
	if c := userns.Confined(); c.Seccomp && errors.Is(err, unix.EPERM) {
		return "a seccomp filter forbids new namespaces"
	}
	return ""
}

// mountRefusal says what refused a mount(2) that failed with EPERM, for
// a process that should have been allowed it (root of its namespace).
func mountRefusal() string {
	c := userns.Confined()
	var who []string
	if !userns.CanMount() {
		who = append(who, "this process lacks CAP_SYS_ADMIN")
	}
	if c.Seccomp {
		who = append(who, "a seccomp filter may forbid mount")
	}
	if lsm := activeLSM(); lsm != "" {
		who = append(who, lsm+" may forbid it")
	}
	if len(who) == 0 {
		return "mount refused (EPERM)"
	}
	return "mount refused (EPERM): " + strings.Join(who, "; ")
}

// devFuseMissing says why /dev/fuse does not exist here: a container
// without the device node, a module not loaded, or a node not made.
func devFuseMissing() (why, hint string) {
	loaded := fuseRegistered()
	c := userns.Confined()
	switch {
	case c.Container != "" && loaded:
		return "no /dev/fuse device node in this container", "run the container with --device /dev/fuse"
	case c.Container != "":
		return "no /dev/fuse device node in this container, and the host has not loaded the fuse module",
			"load the fuse module on the host (modprobe fuse) and run the container with --device /dev/fuse"
	case loaded:
		return "no /dev/fuse device node (the fuse module is loaded)", "make the device node: mknod -m 0666 /dev/fuse c 10 229"
	}
	return "no /dev/fuse: the fuse module is not loaded", "load the fuse module (modprobe fuse)"
}

// fuseRegistered reports whether the kernel has the fuse filesystem
// (built in, or its module loaded): /proc/filesystems lists it.
func fuseRegistered() bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return true // cannot tell: do not blame the module
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "fuse" {
			return true
		}
	}
	return false
}

// activeLSM names a security module that confines mounts, when one is
// active for this process: AppArmor with a profile, SELinux enforcing.
func activeLSM() string {
	if b, err := os.ReadFile("/proc/self/attr/current"); err == nil {
		label := strings.TrimSpace(strings.TrimRight(string(b), "\x00"))
		if label != "" && label != "unconfined" && !strings.HasPrefix(label, "unconfined_") && label != "kernel" {
			return "the security label " + label
		}
	}
	return ""
}

// readSysctl returns the trimmed value of /proc/sys/NAME, "" if absent.
func readSysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// kernelRelease is uname's release, "" when uname fails.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
