package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/selector"
)

// Drop-in mode: the ovl binary stands in for fuse-overlayfs where tools
// drive a FUSE overlay program directly:
//
//	ovl -o lowerdir=A:B,upperdir=U,workdir=W[,other] MOUNTPOINT   (a mount_program, as containers/storage runs it)
//	ovl SOURCE MOUNTPOINT -o OPTS                                 (mount -t fuse.ovl, through mount.fuse3)
//
// The options are the kernel's overlay syntax (layer.ParseOptions), plus
// what fuse-overlayfs takes in its place: allow_other, and uidmapping= and
// gidmapping= (layer.Spec.UIDMapping: the layers keep the container's
// ids, the mount shows them as the host's). An option the drop-in mode
// cannot honour is refused, naming it: nothing is ignored. Without -f the
// mount is served by a detached daemon and ovl returns once it is live.

// dropinOptions is a parsed drop-in command line.
type dropinOptions struct {
	spec       layer.Spec
	foreground bool
	debug      bool // -d: log every FUSE request (and stay in the foreground)
}

// dropinGlobal splits ovl's global flags that may come before a drop-in
// command line (--debug: diagnostics on stderr, as for any ovl command)
// from the rest.
func dropinGlobal(args []string) (debug bool, rest []string) {
	for len(args) > 0 && (args[0] == "--debug" || args[0] == "--debug=true") {
		debug, args = true, args[1:]
	}
	return debug, args
}

// dropinArgs reports whether args (os.Args[1:]) is a drop-in command
// line rather than an ovl subcommand, after ovl's global flags.
func dropinArgs(args []string) bool {
	_, args = dropinGlobal(args)
	if len(args) == 0 {
		return false
	}
	if strings.HasPrefix(args[0], "-o") {
		return true
	}
	// SOURCE MOUNTPOINT -o OPTS: the helper convention of mount.fuse3,
	// unless SOURCE is one of ovl's verbs ("ovl mount /mnt -o ...").
	if len(args) < 3 || args[2] != "-o" || strings.HasPrefix(args[0], "-") {
		return false
	}
	for _, c := range newRootCmd().Commands() {
		if c.Name() == args[0] || c.HasAlias(args[0]) {
			return false
		}
	}
	return args[0] != "help" && args[0] != "completion"
}

// dropinParse parses a drop-in command line.
func dropinParse(args []string) (*dropinOptions, error) {
	o := &dropinOptions{}
	var opts, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o":
			if i+1 >= len(args) {
				return nil, errors.New("-o needs a value: -o lowerdir=A:B,upperdir=U,workdir=W")
			}
			opts = append(opts, args[i+1])
			i++
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, a[2:])
		case a == "-f":
			o.foreground = true
		case a == "-d" || a == "--debug":
			o.foreground, o.debug = true, true
		case strings.HasPrefix(a, "-") && a != "-":
			return nil, fmt.Errorf("%s: unknown flag (the drop-in mode takes -o OPTIONS, -f and -d)", a)
		default:
			positional = append(positional, a)
		}
	}
	switch len(positional) {
	case 1, 2:
		o.spec.Target = positional[len(positional)-1] // SOURCE is ignored, as fuse-overlayfs does
	default:
		return nil, fmt.Errorf("want one MOUNTPOINT (or SOURCE MOUNTPOINT), got %d arguments: %q", len(positional), positional)
	}
	k, err := layer.ParseOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("-o %w", err)
	}
	if err := dropinSupported(k); err != nil {
		return nil, err
	}
	if len(k.Lowers) == 0 {
		return nil, errors.New("no lowerdir= in the options: give -o lowerdir=A[:B...][,upperdir=U,workdir=W]")
	}
	o.spec.Lowers, o.spec.Upper, o.spec.Work, o.spec.ReadOnly = k.Lowers, k.Upper, k.Work, k.ReadOnly
	o.spec.Options = k.Features
	o.spec.UIDMapping, o.spec.GIDMapping = k.UIDMapping, k.GIDMapping
	// Layers a program hands its mount program are written for it with
	// ".wh." whiteout files (containers/storage, which assumes no mknod
	// there); fuse-overlayfs reads them so, and so does its stand-in.
	o.spec.LowerFormat = layer.OCIFormat
	// Trusted unless userxattr asks for user.*: dropinRun narrows it to
	// the decision's namespace (user.* for anyone but real root).
	o.spec.Namespace = layer.Trusted
	if k.UserXattr {
		o.spec.Namespace = layer.User
	}
	if o.spec.Upper == "" {
		o.spec.Work = ""
	}
	// Paths may be relative to the caller's directory (podman runs its
	// mount program in its storage directory): the daemon does not share it.
	if err := mountAbsPaths(&o.spec); err != nil {
		return nil, err
	}
	return o, nil
}

// dropinSupported refuses, naming it, every option the drop-in mode
// cannot honour. The mount flags it takes are those its FUSE mount has
// anyway: dev, suid and exec everywhere, nodev and nosuid where the mount
// is made by fusermount3 or in a user namespace (go-fuse's defaults), not
// by real root.
func dropinSupported(k layer.MountOptions) error {
	if len(k.DataLowers) > 0 {
		return fmt.Errorf("-o lowerdir=...::%s: data-only lower layers are not supported yet by ovl's drop-in mode", k.DataLowers[0])
	}
	realRoot := userns.Privileged()
	for _, opt := range k.Other {
		switch opt {
		case "dev", "suid", "exec", "default_permissions":
			continue // what the FUSE mount does anyway
		case "nodev", "nosuid":
			if !realRoot {
				continue
			}
		}
		return fmt.Errorf("-o %s: not supported yet by ovl's drop-in mode", opt)
	}
	return nil
}

// dropinRun mounts a drop-in command line's stack with the FUSE backend
// (a fuse-overlayfs stand-in is FUSE by definition: nothing to probe).
func dropinRun(ctx context.Context, args []string) error {
	debug, args := dropinGlobal(args)
	setupLogging(debug)
	o, err := dropinParse(args)
	if err != nil {
		return &exitError{code: 2, msg: "drop-in mount: " + err.Error()}
	}
	d, err := selector.Force(backend.FUSE, "the drop-in mode")
	if err != nil {
		return err
	}
	if d.Namespace == layer.User {
		o.spec.Namespace = layer.User
	}
	b, err := d.Open()
	if err != nil {
		return err
	}
	slog.Debug("drop-in mount", "target", o.spec.Target, "lowers", len(o.spec.Lowers), "upper", o.spec.Upper,
		"foreground", o.foreground, "namespace", o.spec.Namespace)
	if o.foreground {
		ctx, stop := signal.NotifyContext(ctx, unix.SIGINT, unix.SIGTERM)
		defer stop()
		if o.debug {
			os.Setenv("OVL_FUSE_DEBUG", "1") // fusefs.EnvDebug: log every FUSE request
		}
		return serveOrMount(ctx, b, o.spec, nil)
	}
	_, err = b.Mount(ctx, o.spec)
	return err
}
