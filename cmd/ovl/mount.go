package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/internal/paths"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/selector"
)

func init() { register(mountNewCmd) }

// mountOptions are `ovl mount`'s parsed flags.
type mountOptions struct {
	JSON     bool
	Backend  string
	Lowers   []string // --lower, top first
	Upper    string
	Work     string
	ReadOnly bool
	Kernel   []string // -o, the kernel's option syntax
	Features layer.Options
	LayerDir string
	// Foreground keeps ovl running until SIGINT/SIGTERM (or, for FUSE,
	// until the mount goes away), serving a FUSE stack in this process,
	// and unmounts on the way out.
	Foreground bool
	Target     string
}

func mountNewCmd(g *globalOptions) *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount [--backend native|fuse|copy] --lower A:B [--upper U --work W] TARGET",
		Short: "Mount a layer stack on TARGET with the fastest backend that works",
		Long: `mount makes the merged tree of the lower layers (top first) and, when given,
the writable upper layer appear at TARGET. Changes land in the upper
directory; work is the backend's scratch directory, next to upper on the
same filesystem. Without an upper the stack is read-only.

The backend is the one 'ovl check' reports for you, unless --backend (or
OVL_BACKEND) names one: native (kernel overlayfs; in place as root), fuse
(ovl's own union filesystem; for ordinary users through fusermount3) or copy
(the layers are copied into TARGET). A forced backend that cannot work here
fails and says why.

Layers are given with --lower: one value "A:B:C" is split at ':' (write '\:'
for a ':' inside a path); given more than once, each --lower is exactly one
layer, top first, so paths may contain ':'. The kernel's own syntax works
too: -o lowerdir=A:B,upperdir=U,workdir=W[,volatile,index=on,...], with '\:'
and '\,' escapes; '-o lowerdir+=DIR' adds one layer.

Undo it with 'ovl umount TARGET'. With --foreground, ovl stays running
instead, serving a FUSE stack itself, and unmounts when interrupted (or when
the mount goes away); with the copy backend that is also when changes in
TARGET are written back to the upper directory.

The fuse backend behaves as kernel overlayfs with two differences, for
speed. It saves a round trip to its daemon on every open: a lower file is
copied up at its first change (write, truncate, chmod, ...), not when it is
opened for writing, so an open for writing that changes nothing leaves the
layers alone. And it syncs a copied-up file to the disk just after linking it
into the upper rather than just before (a machine crash in that moment can
leave a short copy; a killed daemon loses nothing). OVL_FUSE_STRICT_OPEN=1
does both as the kernel does (and lets a root daemon use FUSE
passthrough); OVL_FUSE_PASSTHROUGH=0 turns passthrough off.`,
		Example: `  ovl mount --lower /layers/app:/layers/base --upper /tmp/u --work /tmp/w /mnt/root
  ovl mount --lower '/data/v1:2024' --lower /data/base --read-only /mnt/view
  ovl mount -o lowerdir=/l/app:/l/base,upperdir=/tmp/u,workdir=/tmp/w,volatile /mnt/root
  ovl mount --backend fuse --lower /l/base --upper /tmp/u --work /tmp/w /mnt/root
  ovl mount --foreground --backend copy --lower /l/base --upper /tmp/u --work /tmp/w /mnt/root
  ovl umount /mnt/root`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("mount: give one TARGET directory, not %d arguments (see 'ovl mount --help')", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON = g.JSON
			o.Target = args[0]
			return mountRun(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	backendFlag(f, &o.Backend)
	f.StringArrayVar(&o.Lowers, "lower", nil, "lower layer(s), top first: A:B, or repeat the flag once per layer")
	f.StringVar(&o.Upper, "upper", "", "writable upper layer (needs --work)")
	f.StringVar(&o.Work, "work", "", "work directory, on the same filesystem as --upper")
	f.BoolVar(&o.ReadOnly, "read-only", false, "mount read-only, even with an upper")
	f.StringArrayVarP(&o.Kernel, "options", "o", nil, "kernel overlay options: lowerdir=A:B,upperdir=U,workdir=W,volatile,...")
	f.BoolVar(&o.Features.Volatile, "volatile", false, "no syncs to the upper: faster, but the upper is unusable after a crash")
	f.BoolVar(&o.Features.Index, "index", false, "index=on: keep hard links intact across copy-up")
	f.BoolVar(&o.Features.RedirectDir, "redirect-dir", false, "redirect_dir=on: rename lower directories (root only)")
	f.BoolVar(&o.Features.Metacopy, "metacopy", false, "metacopy=on: copy up metadata only on chmod/chown (root only)")
	f.BoolVar(&o.Features.Xino, "xino", false, "xino=on: unique inode numbers across layers")
	f.BoolVar(&o.Features.AllowOther, "allow-other", false, "let other users use a FUSE mount")
	f.BoolVar(&o.Foreground, "foreground", false, "stay running until interrupted, then unmount (FUSE: serve in this process)")
	layerDirFlag(f, &o.LayerDir)
	return cmd
}

// mountResult is what `ovl mount --json` prints.
type mountResult struct {
	Target  string   `json:"target"`
	Backend string   `json:"backend"`
	Reasons []string `json:"reasons"`
}

func mountRun(ctx context.Context, o *mountOptions, w, errW io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	spec, err := mountSpec(o)
	if err != nil {
		return err
	}
	sel := selector.Options{Backend: o.Backend, Spec: &spec, HostMount: true, LayerDir: o.LayerDir}
	d, err := selector.Select(ctx, sel)
	if err != nil {
		return fmt.Errorf("mount %s: %w", spec.Target, err)
	}
	err = mountWith(ctx, o, d, spec, w, errW)
	if err == nil || o.Foreground {
		return err
	}
	// A backend chosen from the probe cache that fails here may have
	// outlived what the cache knew: probe again, once.
	if now, changed, rerr := selector.Recheck(ctx, sel, d, err); rerr == nil && changed {
		return mountWith(ctx, o, now, spec, w, errW)
	}
	return err
}

// mountWith mounts spec with the backend d names, as mountRun does.
func mountWith(ctx context.Context, o *mountOptions, d selector.Decision, spec layer.Spec, w, errW io.Writer) error {
	b, err := d.Open()
	if err != nil {
		return fmt.Errorf("mount %s: %w", spec.Target, err)
	}
	if d.Namespace == layer.User {
		spec.Namespace = layer.User // metadata in user.overlay.*, as the kernel's userxattr
	}
	if d.Backend == backend.Copy && !d.Forced() && !o.Foreground {
		msg := fmt.Sprintf("mount %s: no overlay backend can mount here for you (%s)", spec.Target, strings.Join(d.Reasons, "; "))
		if len(d.Hints) > 0 {
			msg += "; for one: " + strings.Join(d.Hints, "; ")
		}
		return fmt.Errorf("%s; --backend copy copies the layers into %s instead (ovl umount writes its changes back to the upper)", msg, spec.Target)
	}
	announce := func() error {
		if o.JSON {
			return writeJSON(w, mountResult{Target: spec.Target, Backend: d.Backend, Reasons: d.Reasons})
		}
		_, err := fmt.Fprintf(w, "mounted %s (%s backend: %s)\n", spec.Target, d.Backend, strings.Join(d.Reasons, "; "))
		return err
	}
	if o.Foreground {
		ctx, stop := signal.NotifyContext(ctx, unix.SIGINT, unix.SIGTERM)
		defer stop()
		return serveOrMount(ctx, b, spec, announce)
	}
	if d.Backend == backend.Copy {
		// The record of the copy is keyed by its target as ovl umount
		// finds it: absolute, symlinks resolved.
		if t, err := filepath.EvalSymlinks(spec.Target); err == nil {
			spec.Target = t
		}
	}
	m, err := b.Mount(ctx, spec)
	if err != nil {
		return fmt.Errorf("mount %s with the %s backend: %w", spec.Target, b.Name(), err)
	}
	if cm, ok := m.(*copyback.Mount); ok {
		if err := mountRecordCopy(cm); err != nil {
			return errors.Join(err, cm.Discard())
		}
		fmt.Fprintf(errW, "ovl: %s holds a copy of the layers, not a mount: 'ovl umount %s' writes the changes made there to the upper and empties it\n", spec.Target, spec.Target)
	}
	return announce()
}

// mountRecordCopy records a copy `ovl mount` leaves behind in ovl's state
// directory, so that `ovl umount` can undo it as the copy backend does
// (copyback.Record).
func mountRecordCopy(m *copyback.Mount) error {
	dir, err := paths.StateDir()
	if err != nil {
		return err
	}
	return copyback.Record(dir, m)
}

// serveOrMount keeps spec mounted in the foreground until ctx is done,
// then unmounts; announce (nil: nothing) is called once the mount is
// live. A backend that can serve a stack in this process
// (backend.Server: FUSE) does so, and also returns when the mount goes
// away; any other mounts and waits.
func serveOrMount(ctx context.Context, b backend.Backend, spec layer.Spec, announce func() error) error {
	if announce == nil {
		announce = func() error { return nil }
	}
	if s, ok := b.(backend.Server); ok {
		var announceErr error
		if err := s.Serve(ctx, spec, func() { announceErr = announce() }); err != nil {
			return fmt.Errorf("serve %s with the %s backend: %w", spec.Target, b.Name(), err)
		}
		return announceErr
	}
	m, err := b.Mount(ctx, spec)
	if err != nil {
		return fmt.Errorf("mount %s with the %s backend: %w", spec.Target, b.Name(), err)
	}
	if err := announce(); err != nil {
		m.Unmount()
		return err
	}
	<-ctx.Done()
	if err := m.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", spec.Target, err)
	}
	return nil
}

// mountSpec builds the stack from the flags and -o options. Paths are
// made absolute, so the mount does not depend on the working directory.
func mountSpec(o *mountOptions) (layer.Spec, error) {
	spec := layer.Spec{Target: o.Target, Upper: o.Upper, Work: o.Work, ReadOnly: o.ReadOnly, Options: o.Features}
	switch len(o.Lowers) {
	case 0:
	case 1:
		lowers, data, err := layer.SplitLowerdir(o.Lowers[0])
		if err != nil {
			return spec, fmt.Errorf("--lower %s: %w", o.Lowers[0], err)
		}
		if len(data) > 0 {
			return spec, fmt.Errorf("--lower %s: data-only lower layers (after '::') are not supported by ovl yet: give regular layers, separated by one ':'", o.Lowers[0])
		}
		spec.Lowers = lowers
	default:
		spec.Lowers = append(spec.Lowers, o.Lowers...)
	}
	if len(o.Kernel) > 0 {
		k, err := layer.ParseOptions(o.Kernel...)
		if err != nil {
			return spec, fmt.Errorf("-o %w", err)
		}
		if err := mountApplyKernelOptions(&spec, k, len(o.Lowers) > 0); err != nil {
			return spec, err
		}
	}
	if spec.Options.Metacopy {
		// As in the kernel, metacopy=on turns redirect_dir on: a
		// metacopy-only upper file needs the redirect to its data.
		spec.Options.RedirectDir = true
	}
	if len(spec.Lowers) == 0 {
		return spec, fmt.Errorf("no lower layer: give --lower DIR (or -o lowerdir=DIR)")
	}
	for i, l := range spec.Lowers {
		if l == "" {
			return spec, fmt.Errorf("lower layer %d is an empty path", i)
		}
	}
	return spec, spec.MakeAbs()
}

// mountApplyKernelOptions applies the -o options (layer.ParseOptions) to
// the spec the flags made: paths given both ways are an error, features
// and read-only add to the flags'. What ovl mount cannot do is refused,
// naming the option.
func mountApplyKernelOptions(spec *layer.Spec, k layer.MountOptions, haveLower bool) error {
	switch {
	case len(k.Lowers) > 0 && haveLower:
		return fmt.Errorf("-o lowerdir and --lower both name the lower layers: give one of them")
	case k.Upper != "" && spec.Upper != "":
		return fmt.Errorf("-o upperdir and --upper both name the upper layer: give one of them")
	case k.Work != "" && spec.Work != "":
		return fmt.Errorf("-o workdir and --work both name the work directory: give one of them")
	case len(k.DataLowers) > 0:
		return fmt.Errorf("-o lowerdir=...::%s: data-only lower layers are not supported by ovl yet: give regular layers, separated by one ':'", k.DataLowers[0])
	case len(k.UIDMapping) > 0 || len(k.GIDMapping) > 0:
		return fmt.Errorf("-o uidmapping/gidmapping: ID mappings are not supported by ovl mount yet; the drop-in mode serves them with the fuse backend: ovl -o lowerdir=...,uidmapping=...,gidmapping=... MOUNTPOINT")
	case len(k.Other) > 0:
		return fmt.Errorf("-o %s: ovl mount does not apply this option (it takes lowerdir, lowerdir+, upperdir, workdir, ro, rw, userxattr, volatile, index, redirect_dir, metacopy, xino, allow_other)", k.Other[0])
	}
	if len(k.Lowers) > 0 {
		spec.Lowers = k.Lowers
	}
	if k.Upper != "" {
		spec.Upper = k.Upper
	}
	if k.Work != "" {
		spec.Work = k.Work
	}
	spec.ReadOnly = spec.ReadOnly || k.ReadOnly
	if k.UserXattr {
		spec.Namespace = layer.User
	}
	f := &spec.Options
	f.Volatile = f.Volatile || k.Features.Volatile
	f.Index = f.Index || k.Features.Index
	f.RedirectDir = f.RedirectDir || k.Features.RedirectDir
	f.Metacopy = f.Metacopy || k.Features.Metacopy
	f.Xino = f.Xino || k.Features.Xino
	f.AllowOther = f.AllowOther || k.Features.AllowOther
	return nil
}
