package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/mountinfo"
)

func init() { register(umountNewCmd) }

// umountOptions are `ovl umount`'s parsed flags.
type umountOptions struct {
	Lazy   bool
	Target string
}

func umountNewCmd(g *globalOptions) *cobra.Command {
	o := &umountOptions{}
	cmd := &cobra.Command{
		Use:   "umount TARGET",
		Short: "Unmount a stack mounted with 'ovl mount', whatever its backend",
		Long: `umount detaches the layer stack at TARGET. It reads /proc/self/mountinfo to
see what is mounted there: kernel overlay and, as root, FUSE mounts are
unmounted with umount(2); an ordinary user's FUSE mounts with
'fusermount3 -u'. The FUSE daemon serving the mount exits by itself.
Changes stay in the upper directory.

It refuses anything that is neither an overlay nor a FUSE mount. A stack
made by the copy backend is not a mount: end its 'ovl mount --foreground'
(Ctrl-C) instead, which writes its changes back to the upper directory.`,
		Example: `  ovl umount /mnt/root
  ovl umount --lazy /mnt/root   # detach now, even while files are open`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("umount: give one TARGET directory, not %d arguments (see 'ovl umount --help')", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Target = args[0]
			return umountRun(o)
		},
	}
	cmd.Flags().BoolVarP(&o.Lazy, "lazy", "l", false, "detach now; the kernel finishes once nothing uses the mount (MNT_DETACH)")
	return cmd
}

func umountRun(o *umountOptions) error {
	target, err := umountCanonical(o.Target)
	if err != nil {
		return err
	}
	entries, err := mountinfo.Read()
	if err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	m, found := mountinfo.Find(entries, target)
	if !found {
		return fmt.Errorf("umount %s: not a mount point", target)
	}
	switch {
	case m.FSType == "overlay":
		return umountSyscall(target, o.Lazy)
	case m.FSType == "fuse" || strings.HasPrefix(m.FSType, "fuse."):
		if os.Geteuid() == 0 {
			return umountSyscall(target, o.Lazy)
		}
		return umountFusermount(target, o.Lazy)
	}
	return fmt.Errorf("umount %s: it is a mount of type %s (from %s), not one ovl makes; ovl umount leaves it alone (use umount(8))", target, m.FSType, m.Source)
}

// umountCanonical makes target absolute and resolves symlinks in it. A
// FUSE mount whose daemon died cannot be stat'ed (ENOTCONN): then only
// its parent is resolved.
func umountCanonical(target string) (string, error) {
	a, err := filepath.Abs(target)
	if err != nil {
		return "", fmt.Errorf("umount %s: %w", target, err)
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		return r, nil
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(a))
	if err != nil {
		return "", fmt.Errorf("umount %s: %w", target, err)
	}
	return filepath.Join(parent, filepath.Base(a)), nil
}

func umountSyscall(target string, lazy bool) error {
	flags := 0
	if lazy {
		flags = unix.MNT_DETACH
	}
	err := unix.Unmount(target, flags)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("umount %s: %w: a process has files open or its working directory there (see fuser -m %s), or use --lazy", target, err, target)
	}
	if err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return nil
}

func umountFusermount(target string, lazy bool) error {
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	args = append(args, "--", target)
	out, err := exec.Command("fusermount3", args...).CombinedOutput()
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("umount %s: an ordinary user unmounts FUSE with fusermount3, which is not installed (install fuse3)", target)
	}
	if err != nil {
		return fmt.Errorf("umount %s: fusermount3 -u: %w: %s", target, err, strings.TrimSpace(string(out)))
	}
	return nil
}
