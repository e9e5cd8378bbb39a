// Package dropin is ovl's stand-in for fuse-overlayfs, where tools drive
// a FUSE overlay program directly:
//
//	PROG -o lowerdir=A:B,upperdir=U,workdir=W[,other] MOUNTPOINT   (a mount_program, as containers/storage runs it)
//	PROG SOURCE MOUNTPOINT -o OPTS                                 (mount -t fuse.ovl, through mount.fuse3)
//
// PROG is ovl (whose main sends such a command line here) or the slim
// ovl-fuse, which takes nothing else and starts in a fraction of ovl's
// time: the one to give podman as its mount_program.
//
// The options are the kernel's overlay syntax (layer.ParseOptions), plus
// what fuse-overlayfs takes in its place: allow_other, and uidmapping= and
// gidmapping= (layer.Spec.UIDMapping: the layers keep the container's
// ids, the mount shows them as the host's). An option the drop-in mode
// cannot honour is refused, naming it: nothing is ignored. Without -f the
// mount is served by a detached daemon (fusefs.Backend.Mount) and the
// program returns once it is live. A stand-in for fuse-overlayfs is the
// FUSE backend by definition: nothing is probed.
//
// This package links only what mounting with fusefs needs, so that
// ovl-fuse stays small and quick to start: no selector, no command tree.
package dropin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/fusefs"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// Usage is the drop-in command line, for a program's help.
const Usage = `usage: %[1]s -o lowerdir=A[:B...][,upperdir=U,workdir=W][,OPTION...] [-f] [-d] MOUNTPOINT
       %[1]s SOURCE MOUNTPOINT -o OPTIONS

Mounts the overlay stack with ovl's FUSE union, as fuse-overlayfs does
(podman's mount_program). -f serves it in the foreground, -d also logs
every FUSE request; without them the program returns once the mount is
live and a detached daemon serves it. --debug (first) logs diagnostics.
`

// Options is a parsed drop-in command line.
type Options struct {
	Spec       layer.Spec
	Foreground bool // -f: serve in this process until unmounted or signalled
	Debug      bool // -d: log every FUSE request (and stay in the foreground)
}

// UsageError is a command line the drop-in mode cannot take; programs
// exit with status 2 for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return "drop-in mount: " + e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Global splits the global flags that may come before a drop-in command
// line (--debug: diagnostics on stderr, as for any ovl command) from the
// rest.
func Global(args []string) (debug bool, rest []string) {
	for len(args) > 0 && (args[0] == "--debug" || args[0] == "--debug=true") {
		debug, args = true, args[1:]
	}
	return debug, args
}

// Parse parses a drop-in command line (after Global's flags).
func Parse(args []string) (*Options, error) {
	o := &Options{}
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
			o.Foreground = true
		case a == "-d" || a == "--debug":
			o.Foreground, o.Debug = true, true
		case strings.HasPrefix(a, "-") && a != "-":
			return nil, fmt.Errorf("%s: unknown flag (the drop-in mode takes -o OPTIONS, -f and -d)", a)
		default:
			positional = append(positional, a)
		}
	}
	switch len(positional) {
	case 1, 2:
		o.Spec.Target = positional[len(positional)-1] // SOURCE is ignored, as fuse-overlayfs does
	default:
		return nil, fmt.Errorf("want one MOUNTPOINT (or SOURCE MOUNTPOINT), got %d arguments: %q", len(positional), positional)
	}
	k, err := layer.ParseOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("-o %w", err)
	}
	if err := supported(k); err != nil {
		return nil, err
	}
	if len(k.Lowers) == 0 {
		return nil, errors.New("no lowerdir= in the options: give -o lowerdir=A[:B...][,upperdir=U,workdir=W]")
	}
	o.Spec.Lowers, o.Spec.Upper, o.Spec.Work, o.Spec.ReadOnly = k.Lowers, k.Upper, k.Work, k.ReadOnly
	o.Spec.Options = k.Features
	o.Spec.UIDMapping, o.Spec.GIDMapping = k.UIDMapping, k.GIDMapping
	// Layers a program hands its mount program are written for it with
	// ".wh." whiteout files (containers/storage, which assumes no mknod
	// there); fuse-overlayfs reads them so, and so does its stand-in.
	o.Spec.LowerFormat = layer.OCIFormat
	// Trusted unless userxattr asks for user.*: Run narrows it to the
	// caller's namespace (user.* for anyone but real root).
	o.Spec.Namespace = layer.Trusted
	if k.UserXattr {
		o.Spec.Namespace = layer.User
	}
	if o.Spec.Upper == "" {
		o.Spec.Work = ""
	}
	// Paths may be relative to the caller's directory (podman runs its
	// mount program in its storage directory): the daemon does not share it.
	if err := o.Spec.MakeAbs(); err != nil {
		return nil, err
	}
	return o, nil
}

// supported refuses, naming it, every option the drop-in mode cannot
// honour. The mount flags it takes are those its FUSE mount has anyway:
// dev, suid and exec everywhere, nodev and nosuid where the mount is made
// by fusermount3 or in a user namespace (go-fuse's defaults), not by real
// root.
func supported(k layer.MountOptions) error {
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

// Run mounts a drop-in command line's stack (args as os.Args[1:], Global's
// flags included) with the FUSE backend, whose daemon is
// fusefs.DefaultDaemon: ovl-fuse when it is beside the running program.
// A command line it cannot take is a *UsageError.
func Run(ctx context.Context, args []string) error {
	debug, args := Global(args)
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	o, err := Parse(args)
	if err != nil {
		return &UsageError{err}
	}
	// The layers' metadata namespace, as the selector decides it for the
	// FUSE backend: trusted.* only for real root.
	if layer.NamespaceFor(userns.Privileged()) == layer.User {
		o.Spec.Namespace = layer.User
	}
	slog.Debug("drop-in mount", "target", o.Spec.Target, "lowers", len(o.Spec.Lowers), "upper", o.Spec.Upper,
		"foreground", o.Foreground, "namespace", o.Spec.Namespace)
	if o.Foreground {
		ctx, stop := signal.NotifyContext(ctx, unix.SIGINT, unix.SIGTERM)
		defer stop()
		opts := fusefs.EnvOptions()
		opts.Debug = opts.Debug || o.Debug
		if err := fusefs.Serve(ctx, o.Spec, opts); err != nil {
			return fmt.Errorf("serve %s with the %s backend: %w", o.Spec.Target, fusefs.NewBackend().Name(), err)
		}
		return nil
	}
	_, err = fusefs.NewBackend().Mount(ctx, o.Spec)
	return err
}
