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
// over the host.
func InUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	// The initial namespace maps the whole range: "0 0 4294967295".
	var inside, outside, size uint64
	n, _ := fmt.Sscan(string(b), &inside, &outside, &size)
	return !(n == 3 && inside == 0 && outside == 0 && size == 4294967295)
}
