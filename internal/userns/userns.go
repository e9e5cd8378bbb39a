// Package userns starts ovl's re-exec entry points inside new namespaces.
//
// Go cannot unshare a user namespace in a running, multithreaded process,
// so code that must run as "root in a user namespace" (unprivileged
// overlay mounts, the container runner) runs in a fresh process of this
// binary started with the clone flags set.
package userns

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/reexec"
)

// Command returns a command running re-exec entry with args in a new mount
// namespace, and, for a caller who is not root, in a new user namespace
// where the caller's uid and gid are mapped to 0 (setgroups denied). The
// entry should call MakePrivate before it mounts anything.
func Command(entry string, args ...string) *exec.Cmd {
	cmd := reexec.Command(entry, args...)
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	return cmd
}

// MakePrivate stops mounts made from now on in this mount namespace from
// propagating back to the namespace it was copied from.
func MakePrivate() error {
	return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
}

// InUserNamespace reports whether this process runs in a user namespace
// other than the initial one, where it may be "root" without privilege
// over the host. It reads /proc/self/uid_map once per process: a process
// never changes its user namespace (Go cannot unshare one in a running,
// multithreaded process; ovl starts a new process for that).
func InUserNamespace() bool { return inUserNamespace() }

var inUserNamespace = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	// The initial namespace maps the whole range: "0 0 4294967295".
	var inside, outside, size uint64
	n, _ := fmt.Sscan(string(b), &inside, &outside, &size)
	return !(n == 3 && inside == 0 && outside == 0 && size == 4294967295)
})

// Privileged reports whether this process is real root: euid 0 in the
// initial user namespace. It is ovl's one answer to "may this process
// mount overlays in place, with trusted.* metadata?": everyone else (an
// ordinary user, root inside a user namespace) mounts inside a user
// namespace, where overlay metadata lives in user.* (userxattr). Answered
// once per process.
func Privileged() bool { return privileged() }

var privileged = sync.OnceValue(func() bool { return os.Geteuid() == 0 && !InUserNamespace() })
