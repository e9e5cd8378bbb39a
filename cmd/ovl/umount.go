package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/internal/paths"
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

It refuses anything that is neither an overlay nor a FUSE mount, except a
copy that 'ovl mount --backend copy' made at TARGET (which is not a mount):
the changes made in it are written to its upper directory, as kernel
overlay would have kept them, and TARGET is emptied.`,
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
		return umountCopy(target)
	}
	if m.FSType != "overlay" && m.FSType != "fuse" && !strings.HasPrefix(m.FSType, "fuse.") {
		return fmt.Errorf("umount %s: it is a mount of type %s (from %s), not one ovl makes; ovl umount leaves it alone (use umount(8))", target, m.FSType, m.Source)
	}
	if err := backend.Unmount(target, o.Lazy); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w, or use --lazy", err)
		}
		return err
	}
	return nil
}

// umountCopy undoes a copy `ovl mount --backend copy` made at target, as
// the copy backend does: the changes made in it go to its upper, then it
// is emptied (copyback.Recorded).
func umountCopy(target string) error {
	dir, err := paths.StateDir()
	if err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	cm, ok, err := copyback.Recorded(dir, target)
	if err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	if !ok {
		return fmt.Errorf("umount %s: %w, nor a copy made by 'ovl mount --backend copy'", target, backend.ErrNotMounted)
	}
	if err := cm.Unmount(); err != nil {
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return copyback.Forget(dir, target)
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
