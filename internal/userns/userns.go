// Package userns starts ovl's re-exec entry points inside new namespaces,
// and answers what this process may do without one: whether it is real
// root (Privileged), whether it may mount at all (CanMount, by
// capability, not by uid).
//
// Go cannot unshare a user namespace in a running, multithreaded process,
// so code that must run as "root in a user namespace" (unprivileged
// overlay mounts, the container runner) runs in a fresh process of this
// binary started with the clone flags set.
package userns

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/reexec"
)

// Command returns a command running re-exec entry with args in a new mount
// namespace, and, for a caller that may not mount (CanMount: no
// CAP_SYS_ADMIN, as an ordinary user or root in a default container), in
// a new user namespace as well (SysProcAttr). The entry should call
// MakePrivate before it mounts anything.
func Command(entry string, args ...string) *exec.Cmd {
	return command(!CanMount(), entry, args)
}

// UserCommand is Command with a new user namespace whatever the caller's
// capabilities: for a caller whose own mounts were refused although it
// holds CAP_SYS_ADMIN, which tries the way of an ordinary user next.
func UserCommand(entry string, args ...string) *exec.Cmd {
	return command(true, entry, args)
}

func command(newUser bool, entry string, args []string) *exec.Cmd {
	cmd := reexec.Command(entry, args...)
	cmd.SysProcAttr = SysProcAttr(newUser)
	return cmd
}

// SysProcAttr returns the attributes that start a process in a new mount
// namespace, killed with its parent thread, and with newUser in a new
// user namespace where the caller is root (Mappings).
func SysProcAttr(newUser bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if newUser {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings, attr.GidMappings, attr.GidMappingsEnableSetgroups = Mappings()
	}
	return attr
}

// Mappings returns the id maps of a new user namespace this process
// makes, in which it is root: for root that may set ids (CAP_SETUID and
// CAP_SETGID, as in a default container), every id it has, each as
// itself, so files keep their owners and chown works; for anyone else
// its own uid and gid as 0, with setgroups denied (all the kernel allows
// without privilege).
func Mappings() (uids, gids []syscall.SysProcIDMap, setgroups bool) {
	if os.Geteuid() == 0 && HasCap(unix.CAP_SETUID) && HasCap(unix.CAP_SETGID) {
		u, uerr := identityMap("/proc/self/uid_map")
		g, gerr := identityMap("/proc/self/gid_map")
		if uerr == nil && gerr == nil {
			return u, g, true
		}
	}
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		[]syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}, false
}

// identityMap maps every id of this process's user namespace (the inside
// column of its map file) to itself in a child namespace.
func identityMap(file string) ([]syscall.SysProcIDMap, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []syscall.SysProcIDMap
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var inside, outside, size int64
		if n, _ := fmt.Sscan(sc.Text(), &inside, &outside, &size); n == 3 {
			out = append(out, syscall.SysProcIDMap{ContainerID: int(inside), HostID: int(inside), Size: int(size)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no mapping", file)
	}
	return out, nil
}

// MakePrivate stops mounts made from now on in this mount namespace from
// propagating back to the namespace it was copied from.
func MakePrivate() error {
	return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
}

// initUserNSIno is the inode number of the initial user namespace's
// /proc/PID/ns/user. Linux: include/linux/proc_ns.h:PROC_USER_INIT_INO.
const initUserNSIno = 0xEFFFFFFD

// InUserNamespace reports whether this process runs in a user namespace
// other than the initial one, where it may be "root" without privilege
// over the host. It is answered once per process: a process never
// changes its user namespace (Go cannot unshare one in a running,
// multithreaded process; ovl starts a new process for that). The
// namespace's inode tells; where /proc/self/ns is unreadable, the id
// map (a namespace mapping every id as itself, as ovl makes for root,
// looks like the initial one there).
func InUserNamespace() bool { return inUserNamespace() }

var inUserNamespace = sync.OnceValue(func() bool {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &st); err == nil {
		return st.Ino != initUserNSIno
	}
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
// initial user namespace, holding CAP_SYS_ADMIN. It is ovl's one answer
// to "may this process mount overlays in place, with trusted.* metadata?":
// everyone else (an ordinary user, root inside a user namespace, root in
// a container without CAP_SYS_ADMIN) mounts where it holds CAP_SYS_ADMIN,
// in a user namespace, where overlay metadata lives in user.*
// (userxattr). Answered once per process.
func Privileged() bool { return privileged() }

var privileged = sync.OnceValue(func() bool { return os.Geteuid() == 0 && !InUserNamespace() && CanMount() })
