package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/selector"
)

// Drop-in mode: the ovl binary stands in for fuse-overlayfs where tools
// drive a FUSE overlay program directly:
//
//	ovl -o lowerdir=A:B,upperdir=U,workdir=W[,other] MOUNTPOINT   (a mount_program, as containers/storage runs it)
//	ovl SOURCE MOUNTPOINT -o OPTS                                 (mount -t fuse.ovl, through mount.fuse3)
//
// Options it does not know are ignored, as fuse-overlayfs does, so a
// caller's fuse-overlayfs command line works unchanged. Without -f the
// mount is served by a detached daemon and ovl returns once it is live.

// dropinOptions is a parsed drop-in command line.
type dropinOptions struct {
	spec       layer.Spec
	foreground bool
	ignored    []string // options given but not understood
}

// dropinArgs reports whether args (os.Args[1:]) is a drop-in command
// line rather than an ovl subcommand.
func dropinArgs(args []string) bool {
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
		case strings.HasPrefix(a, "-") && a != "-":
			o.ignored = append(o.ignored, a)
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
	for _, group := range opts {
		for _, kv := range dropinSplitOptions(group) {
			key, val, _ := strings.Cut(kv, "=")
			switch key {
			case "lowerdir":
				o.spec.Lowers = append(o.spec.Lowers, dropinSplitLowers(val)...)
			case "upperdir":
				o.spec.Upper = val
			case "workdir":
				o.spec.Work = val
			case "ro":
				o.spec.ReadOnly = true
			case "rw":
				o.spec.ReadOnly = false
			case "allow_other":
				o.spec.Options.AllowOther = true
			case "volatile":
				o.spec.Options.Volatile = true
			case "userxattr":
				o.spec.Namespace = layer.User
			case "":
			default:
				o.ignored = append(o.ignored, kv)
			}
		}
	}
	if len(o.spec.Lowers) == 0 {
		return nil, errors.New("no lowerdir= in the options: give -o lowerdir=A[:B...][,upperdir=U,workdir=W]")
	}
	if o.spec.Upper == "" {
		o.spec.Work = ""
	}
	return o, nil
}

// dropinSplitOptions splits a mount option string at commas, keeping a
// comma escaped with a backslash.
func dropinSplitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

// dropinSplitLowers splits lowerdir's colon-separated list (top first).
func dropinSplitLowers(s string) []string {
	var out []string
	for _, l := range strings.Split(s, ":") {
		if l != "" {
			out = append(out, filepath.Clean(l))
		}
	}
	return out
}

// dropinRun mounts a drop-in command line's stack with the FUSE backend
// (a fuse-overlayfs stand-in is FUSE by definition: nothing to probe).
func dropinRun(ctx context.Context, args []string) error {
	o, err := dropinParse(args)
	if err != nil {
		return &exitError{code: 2, msg: "drop-in mount: " + err.Error()}
	}
	if len(o.ignored) > 0 {
		slog.Debug("drop-in: ignoring options", "options", o.ignored)
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
	if o.foreground {
		ctx, stop := signal.NotifyContext(ctx, unix.SIGINT, unix.SIGTERM)
		defer stop()
		return serveOrMount(ctx, b, o.spec, nil)
	}
	_, err = b.Mount(ctx, o.spec)
	return err
}
