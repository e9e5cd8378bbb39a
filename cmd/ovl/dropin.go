package main

import (
	"context"
	"errors"
	"strings"

	"github.com/ovl-dev/ovl/internal/dropin"
)

// dropinArgs reports whether args (os.Args[1:]) is a drop-in command
// line (package dropin: ovl as fuse-overlayfs's stand-in) rather than an
// ovl subcommand, after ovl's global flags.
func dropinArgs(args []string) bool {
	_, args = dropin.Global(args)
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

// dropinRun runs a drop-in command line: a command line it cannot take
// exits with status 2.
func dropinRun(ctx context.Context, args []string) error {
	err := dropin.Run(ctx, args)
	var usage *dropin.UsageError
	if errors.As(err, &usage) {
		return &exitError{code: 2, msg: err.Error()}
	}
	return err
}
