package fusefs

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// cacheTimeout is how long the kernel may trust entries, attributes and
// negative lookups: the union is the only writer of its upper, and
// invalidates what it changes behind the kernel's back.
const cacheTimeout = time.Hour

// daemonProcs is the GOMAXPROCS a serving process runs with at least.
const daemonProcs = 8

// servingProcs is the GOMAXPROCS a serving process runs with at least:
// daemonProcs, or OVL_FUSE_PROCS.
func servingProcs() int {
	if v, err := strconv.Atoi(os.Getenv("OVL_FUSE_PROCS")); err == nil && v > 0 {
		return v
	}
	return daemonProcs
}

// maxWrite is the largest write (and read) request the kernel sends:
// 1 MiB less 8 KiB, so that a READ reply (header, data and the page
// go-fuse keeps free) fits a pipe of the default pipe-max-size (1 MiB)
// and is spliced from the file (spliceRead). At a full 1 MiB go-fuse
// cannot grow its pipe that far and copies the data through the daemon
// instead, twice (a 1 GiB read: daemon CPU 0.42-0.49 s, 0.29-0.37 s
// spliced).
const maxWrite = 1<<20 - 8<<10

// newRoot builds the root node of u: the layer roots, merged top-down
// and cut below an opaque one.
func newRoot(u *unionFS) (*node, error) {
	var layers []int
	var opac []layer.Opacity
	var bottom unix.Stat_t
	for i, l := range u.layers {
		op, err := u.reader(i).Opacity(l.fd)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.path, err)
		}
		if err := unix.Fstat(l.fd, &bottom); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.path, err)
		}
		layers = append(layers, i)
		opac = append(opac, op)
		if op == layer.OpaqueDir {
			break
		}
	}
	root := newNode(u, u.ino(bottom.Dev, bottom.Ino), true, layers)
	root.opacity = opac
	return root, nil
}

// Serve mounts spec at spec.Target and serves it in this process until
// the mount goes away (umount, fusermount3 -u) or ctx is done, which
// unmounts it. opts.Ready is called once the mount is live.
//
// Once ctx is done and the target is unmounted here, Serve returns even
// if a copy of the mount in another mount namespace still holds the FUSE
// connection: the caller must then exit (as ovl's daemon and commands
// do), which ends the connection, so the stack's upper stops changing.
func Serve(ctx context.Context, spec layer.Spec, opts Options) error {
	if !opts.checked {
		if err := spec.Validate(0); err != nil {
			return err
		}
		if err := checkFeatures(spec); err != nil {
			return err
		}
	}
	logger := slog.Default()
	// The kernel applied the caller's umask to every mode it sends.
	unix.Umask(0)
	// Requests wait on a blocking read of /dev/fuse; with few Ps a
	// reader coming back from the syscall queues for one, which is most
	// of a round trip's latency on a busy machine. More Ps (and so more
	// go-fuse readers) cut it by a quarter here (measured with 2 CPUs).
	// (The daemon Mount starts gets them from the start: servingProcs.)
	if procs := servingProcs(); runtime.GOMAXPROCS(0) < procs {
		runtime.GOMAXPROCS(procs)
	}
	u, err := newUnionFS(spec, logger)
	if err != nil {
		return err
	}
	defer u.close()
	// A stack nobody can write through gains nothing from seeing opens:
	// skip their round trips.
	u.noOpen = !opts.StrictOpen || !u.writable
	u.passthrough = !u.noOpen && !opts.NoPassthrough && passthroughAllowed()
	if u.writable && !u.volatile && !opts.StrictOpen {
		u.syncer = newCopySyncer(logger)
	}
	root, err := newRoot(u)
	if err != nil {
		return err
	}
	timeout := cacheTimeout
	mo := fuse.MountOptions{
		FsName:                   "ovl",
		Name:                     "ovl",
		Options:                  []string{"default_permissions"},
		AllowOther:               spec.Options.AllowOther || otherUsersAllowed(),
		MaxWrite:                 maxWrite,
		MaxReadAhead:             maxWrite,
		MaxBackground:            64,
		DirectMount:              true,
		EnableSymlinkCaching:     true,
		ExplicitDataCacheControl: true,
		Debug:                    opts.Debug,
	}
	if u.writable && !u.passthrough {
		// The union drops set-id bits on write, truncate and chown
		// itself (rawUnion.Writev, node.Setattr; file capabilities go
		// with the daemon's own write, truncate and chown of the upper
		// file), which saves the kernel a GETXATTR of
		// security.capability before most changes and a GETATTR before
		// each chown. Not with passthrough: the kernel then leaves the
		// set-id bits alone on a passthrough write, which the daemon
		// never sees.
		mo.ExtraCapabilities |= fuse.CAP_HANDLE_KILLPRIV_V2
	}
	if !u.writable {
		mo.Options = append(mo.Options, "ro")
	}
	if userns.Privileged() {
		// Device nodes and set-user-ID files work as on kernel overlay
		// (go-fuse's default is nodev,nosuid). In a user namespace the
		// kernel adds nodev itself; fusermount3 adds both.
		mo.DirectMountFlags = unix.MS_RELATIME
	}
	if !opts.Debug {
		mo.Logger = log.New(discard{}, "", 0)
	}
	bridge := fs.NewNodeFS(root, &fs.Options{
		MountOptions:    mo,
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Ino: root.ino},
	})
	server, err := fuse.NewServer(&rawUnion{RawFileSystem: bridge}, spec.Target, &mo)
	if err != nil {
		return fmt.Errorf("mount fuse on %s: %w", spec.Target, err)
	}
	go server.Serve()
	// NewServer returns once the mount exists (mount(2) or fusermount3
	// have returned); the kernel holds every request until the INIT
	// reply, which Serve sends. WaitMount adds go-fuse's poll guard,
	// which only a process that opens files in its own mount needs.
	if !opts.alone {
		if err := server.WaitMount(); err != nil {
			server.Unmount()
			return fmt.Errorf("mount fuse on %s: %w", spec.Target, err)
		}
	}
	// The mount's device, from the superblock: AT_STATX_DONT_SYNC spares
	// a GETATTR round trip.
	var mnt unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, spec.Target, unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &mnt); err != nil {
		server.Unmount()
		return fmt.Errorf("mount fuse on %s: %w", spec.Target, err)
	}
	mntDev := unix.Mkdev(mnt.Dev_major, mnt.Dev_minor)
	logger.Debug("fusefs mounted", "target", spec.Target, "passthrough", u.passthrough, "writable", u.writable)
	if opts.Ready != nil {
		opts.Ready()
	}
	// After Ready: the mount is usable without it, and the caller need
	// not wait for a write to sysfs.
	if err := raiseReadahead(mnt.Dev_major, mnt.Dev_minor); err != nil {
		logger.Debug("fusefs: readahead stays at the kernel's default", "target", spec.Target, "err", err)
	}
	served := make(chan struct{})
	go func() {
		server.Wait()
		close(served)
	}()
	select {
	case <-served:
		return nil
	case <-ctx.Done():
	}
	if stillMounted(spec.Target, mntDev) {
		if err := backend.Unmount(spec.Target, false); err != nil && stillMounted(spec.Target, mntDev) {
			logger.Warn("unmount", "target", spec.Target, "err", err)
			<-served
			return nil
		}
	}
	// The mount is gone from this mount namespace. A copy of it in
	// another one (any process that unshared its mount namespace while
	// the stack was mounted) would keep the connection, and so this
	// server, alive until that process ends: seconds to minutes later,
	// or never. The caller asked the stack to stop, so stop serving
	// now; the connection ends when this process exits, and such
	// copies then fail with ENOTCONN instead of changing the upper
	// behind the caller's back.
	logger.Debug("fusefs stopped", "target", spec.Target)
	return nil
}

// raiseReadahead lets the kernel read ahead up to maxWrite in one READ
// on the mount whose device is major:minor. The INIT reply cannot raise
// it above the kernel's default of 128 KiB (fs/fuse/inode.c takes the
// smaller of the two), its backing device's read_ahead_kb in sysfs can:
// a file read sequentially then costs one round trip per MiB instead of
// per 128 KiB. Writable by root in the initial namespace only; elsewhere
// the default stays.
func raiseReadahead(major, minor uint32) error {
	return os.WriteFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor), []byte(strconv.Itoa(maxWrite>>10)), 0)
}

// fuseConf is fuse's configuration file, where user_allow_other lets an
// ordinary user mount with allow_other through fusermount3.
const fuseConf = "/etc/fuse.conf"

// OtherUsers reports whether a FUSE mount this process makes admits
// users other than itself, and says why or why not. The union then
// mounts with allow_other, always with default_permissions, so the kernel
// checks every access against the files' owners and modes as on any
// filesystem: as root (in the initial user namespace, or in one the
// mount belongs to, whose processes alone may reach it), and through
// fusermount3 as an ordinary user where /etc/fuse.conf allows it
// (user_allow_other). Without it, every other uid gets EACCES, a
// container's non-root processes included.
func OtherUsers() (ok bool, why string) {
	switch {
	case os.Geteuid() == 0 && !userns.InUserNamespace():
		return true, "mounts as root with allow_other: every user gets what the files' permissions give"
	case os.Geteuid() == 0:
		return true, "mounts as root of its user namespace with allow_other: the namespace's users get what the files' permissions give"
	case userAllowOther(fuseConf):
		return true, "mounts through fusermount3 with allow_other (user_allow_other in " + fuseConf + "): every user gets what the files' permissions give"
	}
	return false, fmt.Sprintf("mounts through fusermount3 without allow_other: only uid %d can use them, every other user (a container's non-root processes too) gets EACCES; add user_allow_other to %s to let them in, or mount inside a user namespace", os.Geteuid(), fuseConf)
}

// otherUsersAllowed is OtherUsers' answer.
func otherUsersAllowed() bool {
	ok, _ := OtherUsers()
	return ok
}

// userAllowOther reports whether the fuse configuration file at path
// has the user_allow_other option (a line of its own; # starts a
// comment).
func userAllowOther(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

// stillMounted reports whether target is still the root of the mount
// whose device is dev, in this process's mount namespace.
func stillMounted(target string, dev uint64) bool {
	var st unix.Stat_t
	return unix.Stat(target, &st) == nil && st.Dev == dev
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// passthroughAllowed reports whether this daemon may register backing
// files with the kernel: CAP_SYS_ADMIN in the initial user namespace and
// a kernel with FUSE passthrough (6.9+).
func passthroughAllowed() bool {
	if userns.InUserNamespace() || !kernelAtLeast(6, 9) {
		return false
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_ADMIN) != 0
}

func kernelAtLeast(major, minor int) bool {
	var uts unix.Utsname
	if unix.Uname(&uts) != nil {
		return false
	}
	rel := unix.ByteSliceToString(uts.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return ma > major || (ma == major && mi >= minor)
}

func init() {
	if os.Getenv("OVL_FUSEFS_DEBUG") != "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
}
