package selector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// supportsDevFuse opens /dev/fuse read-write, as a FUSE mount must. A
// "no" says what is missing (refusal.go) and what to do: pass the device
// node to a container, load the module, open up the device's mode.
func supportsDevFuse() Result {
	start := time.Now()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return result(ProbeDevFuse, start, true, "", nil)
	}
	var why, hint string
	switch {
	case errors.Is(err, os.ErrNotExist):
		why, hint = devFuseMissing()
	case errors.Is(err, unix.EPERM):
		why, hint = "the container's device rules refuse /dev/fuse", "run the container with --device /dev/fuse"
	case errors.Is(err, os.ErrPermission):
		why, hint = "/dev/fuse is not open to this user", "make /dev/fuse 0666 (chmod 0666 /dev/fuse), as stock distributions do"
	}
	r := result(ProbeDevFuse, start, false, why, err)
	r.Hint = hint
	return r
}

// supportsFuseMount mounts a FUSE filesystem with no daemon behind it —
// as root in place, as an ordinary user inside the probe's user namespace
// (Linux 4.18+) — then closes the device, which aborts the connection,
// and unmounts.
func supportsFuseMount(dir string) (bool, string, error) {
	s, err := newSandbox(dir, ProbeFuseMount)
	if err != nil {
		return false, "", err
	}
	defer s.remove()
	mnt, err := s.dir("m")
	if err != nil {
		return false, "", err
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, "cannot open /dev/fuse", fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	s.mounted(mnt)
	err = unix.Mount("ovl-probe", mnt, "fuse", unix.MS_NOSUID|unix.MS_NODEV, data)
	unix.Close(fd)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			why := mountRefusal()
			if !userns.Privileged() && !kernelAtLeast(kernelRelease(), 4, 18) {
				why = "FUSE mounts in a user namespace need Linux 4.18"
			}
			return false, why, fmt.Errorf("mount fuse on %s: %w", mnt, err)
		}
		return false, "", fmt.Errorf("mount fuse on %s: %w", mnt, err)
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		return false, "", fmt.Errorf("unmount fuse at %s: %w", mnt, err)
	}
	return true, "", nil
}

// hasFusermount3 finds fusermount3 and checks it is setuid root, which an
// ordinary user needs to mount FUSE outside a user namespace, and that it
// can gain CAP_SYS_ADMIN here: a container's bounding set and
// no_new_privs void the set-user-ID bit.
func hasFusermount3() (bool, string, error) {
	p, err := exec.LookPath("fusermount3")
	if err != nil {
		return false, "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return false, "", err
	}
	if st.Uid != 0 || st.Mode&unix.S_ISUID == 0 {
		return false, p, fmt.Errorf("%s is not setuid root", p)
	}
	if !userns.InBounding(unix.CAP_SYS_ADMIN) {
		return false, p, fmt.Errorf("%s cannot gain CAP_SYS_ADMIN: it is not in this process's capability bounding set (a container's capabilities)", p)
	}
	if userns.Confined().NoNewPrivs {
		return false, p, fmt.Errorf("%s cannot gain privileges: no_new_privs is set for this process", p)
	}
	return true, p, nil
}

// ProbeFuseHost: ovl's FUSE backend mounts a stack in the caller's own
// mount namespace without privilege, through fusermount3, as an ordinary
// user's `ovl mount` and the drop-in mode (a mount_program) do; it works
// where no user namespace can be made. Probed for callers without
// CAP_SYS_ADMIN only.
const ProbeFuseHost = "fuse_in_place"

// supportsFuseHost mounts a small stack with ovl's FUSE backend in this
// process's mount namespace, which for a caller without privilege goes
// through fusermount3, and checks it as supportsFuseBackend does.
func supportsFuseHost(ctx context.Context, dir string, b backend.Backend) (bool, string, error) {
	ok, _, err := supportsFuseBackend(ctx, dir, layer.User, b)
	if err != nil {
		return false, "", err
	}
	return ok, "in place, through fusermount3", nil
}

// supportsFuseBackend mounts a small stack with ovl's FUSE backend, reads
// through it and deletes a lower file, which must leave a whiteout in the
// upper. The layer directory may be on an overlay mount (a CI job's
// container): the union keeps its upper there in the kernel's xattr
// whiteout form (layer.XattrWhiteouts), which Detail then says. A backend
// that is not built in answers with backend.ErrUnavailable.
func supportsFuseBackend(ctx context.Context, dir string, ns layer.Namespace, b backend.Backend) (bool, string, error) {
	err := withStackMount(ctx, dir, ProbeFuseBackend, b.Mount, true, ns, layer.Options{}, func(st *stack) error {
		if err := readIs(filepath.Join(st.mnt, "bottom"), "bottom"); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(st.mnt, "gone")); err != nil {
			return err
		}
		if _, err := os.Lstat(filepath.Join(st.mnt, "gone")); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removed file still visible through the mount (lstat: %v)", err)
		}
		return nil
	}, func(st *stack) error { return expectWhiteout(st.upper, "gone") })
	detail := ""
	if fs, _, ferr := layerFS(dir); ferr == nil && fs == "overlay" {
		detail = "layer dir on overlay: " + layer.XattrWhiteouts.String()
	}
	return err == nil, detail, err
}
