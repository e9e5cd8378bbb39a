package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Peer tool names, as the report shows them.
const (
	PeerKernel         = "kernel overlay"
	PeerFuseOverlayfs  = "fuse-overlayfs"
	PeerUnionfsFuse    = "unionfs-fuse"
	PeerCopy           = "cp -a"
	debianFuseOverlay  = "fuse-overlayfs"
	debianUnionfsFuse  = "unionfs-fuse"
	debianCoreutilsCmd = "coreutils"
)

// LookPath finds a program; exec.LookPath in real runs, a fake in tests.
type LookPath func(name string) (string, error)

// Peers returns the peer contestants: kernel overlay mounted with
// mount(2), fuse-overlayfs, unionfs-fuse (-o cow) and cp -a. A tool that
// lookPath cannot find is returned with Unavailable wrapping ErrMissing and
// naming the Debian package to install. root says whether the caller may
// mount; without it every mounting peer is unavailable.
func Peers(lookPath LookPath, root bool) []*Contestant {
	kernel := &Contestant{Name: PeerKernel, Peer: true, Podman: podmanKernel, mount: mountKernel}
	if !root {
		kernel.Unavailable = errors.New("mounting overlayfs with mount(2) needs root")
	}

	fo := &Contestant{Name: PeerFuseOverlayfs, Peer: true, FUSE: true, Podman: podmanFuseOverlayfs}
	if p, err := lookPath("fuse-overlayfs"); err != nil {
		fo.Unavailable = fmt.Errorf("fuse-overlayfs %w (Debian package %s)", ErrMissing, debianFuseOverlay)
	} else {
		fo.mount = func(ctx context.Context, s Stack) (Mounted, error) { return mountFuseOverlayfs(ctx, p, s) }
	}

	uf := &Contestant{Name: PeerUnionfsFuse, Peer: true, FUSE: true}
	if p, err := lookPath("unionfs"); err != nil {
		uf.Unavailable = fmt.Errorf("unionfs %w (Debian package %s)", ErrMissing, debianUnionfsFuse)
	} else {
		uf.mount = func(ctx context.Context, s Stack) (Mounted, error) { return mountUnionfs(ctx, p, s) }
	}
	if !root {
		// Both could mount through fusermount3, but the bench's cold
		// workloads and kernel baseline need root anyway.
		for _, c := range []*Contestant{fo, uf} {
			if c.Unavailable == nil {
				c.Unavailable = errors.New("the bench mounts FUSE peers as root only")
			}
		}
	}

	cp := &Contestant{Name: PeerCopy, Peer: true, SnapshotOnly: true}
	if p, err := lookPath("cp"); err != nil {
		cp.Unavailable = fmt.Errorf("cp %w (Debian package %s)", ErrMissing, debianCoreutilsCmd)
	} else {
		cp.mount = func(ctx context.Context, s Stack) (Mounted, error) { return copyTree(ctx, p, s) }
	}
	return []*Contestant{kernel, fo, uf, cp}
}

// kernelOptions builds the mount(2) option string for s. Paths with a
// comma cannot be said in it; a colon is escaped as the kernel reads it.
func kernelOptions(s Stack) (string, error) {
	esc := func(p string) (string, error) {
		if strings.ContainsAny(p, ",\\") {
			return "", fmt.Errorf("path %q: a comma or backslash cannot be passed to mount(2) here; use a simpler bench directory", p)
		}
		return strings.ReplaceAll(p, ":", `\:`), nil
	}
	var lowers []string
	for _, l := range s.Lowers {
		e, err := esc(l)
		if err != nil {
			return "", err
		}
		lowers = append(lowers, e)
	}
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if s.Upper != "" {
		u, err := esc(s.Upper)
		if err != nil {
			return "", err
		}
		w, err := esc(s.Work)
		if err != nil {
			return "", err
		}
		opts += ",upperdir=" + u + ",workdir=" + w
	}
	if len(opts) >= os.Getpagesize() {
		return "", fmt.Errorf("overlay options are %d bytes, more than mount(2) takes (%d); use a shorter bench directory", len(opts), os.Getpagesize())
	}
	return opts, nil
}

func mountKernel(ctx context.Context, s Stack) (Mounted, error) {
	opts, err := kernelOptions(s)
	if err != nil {
		return nil, err
	}
	if err := unix.Mount("overlay", s.Target, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("mount -t overlay: %w", err)
	}
	return &umountTarget{dir: s.Target}, nil
}

// umountTarget is a mount taken away with umount(2).
type umountTarget struct{ dir string }

func (m *umountTarget) Dir() string { return m.dir }

func (m *umountTarget) Unmount() error { return unmountDir(m.dir) }

// unmountDir unmounts dir, retrying a busy FUSE mount for a moment and
// detaching it as the last resort, and waits until dir is no longer a
// mount point.
func unmountDir(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		err = unix.Unmount(dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w (detach: %v)", dir, err, derr)
	}
	return nil
}

// fuseMount runs a FUSE tool that daemonizes once its mount is live.
func fuseMount(ctx context.Context, target string, prog string, args ...string) (Mounted, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(prog), err, strings.TrimSpace(out.String()))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil || st.Type != unix.FUSE_SUPER_MAGIC {
		unmountDir(target)
		return nil, fmt.Errorf("%s exited but %s is not a FUSE mount", filepath.Base(prog), target)
	}
	return &umountTarget{dir: target}, nil
}

func mountFuseOverlayfs(ctx context.Context, prog string, s Stack) (Mounted, error) {
	opts, err := kernelOptions(s)
	if err != nil {
		return nil, err
	}
	return fuseMount(ctx, s.Target, prog, "-o", opts, s.Target)
}

// unionfsBranches is unionfs-fuse's branch list: the upper first,
// read-write, then the lowers read-only.
func unionfsBranches(s Stack) (string, error) {
	var b []string
	all := s.Lowers
	if s.Upper != "" {
		all = append([]string{s.Upper}, s.Lowers...)
	}
	for i, p := range all {
		if strings.ContainsAny(p, ":=,") {
			return "", fmt.Errorf("path %q: unionfs-fuse branches cannot contain ':', '=' or ','", p)
		}
		mode := "RO"
		if i == 0 && s.Upper != "" {
			mode = "RW"
		}
		b = append(b, p+"="+mode)
	}
	return strings.Join(b, ":"), nil
}

func mountUnionfs(ctx context.Context, prog string, s Stack) (Mounted, error) {
	br, err := unionfsBranches(s)
	if err != nil {
		return nil, err
	}
	return fuseMount(ctx, s.Target, prog, "-o", "cow", br, s.Target)
}

// copied is a "mount" made by copying the lower tree into the target.
type copied struct{ dir string }

func (m *copied) Dir() string { return m.dir }

// Unmount empties the target, as a throw-away copy is discarded.
func (m *copied) Unmount() error { return emptyDir(m.dir) }

func copyTree(ctx context.Context, cp string, s Stack) (Mounted, error) {
	if len(s.Lowers) != 1 {
		return nil, fmt.Errorf("cp -a copies one tree; %d layers given", len(s.Lowers))
	}
	out, err := exec.CommandContext(ctx, cp, "-a", s.Lowers[0]+"/.", s.Target+"/").CombinedOutput()
	if err != nil {
		emptyDir(s.Target)
		return nil, fmt.Errorf("cp -a: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return &copied{dir: s.Target}, nil
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
