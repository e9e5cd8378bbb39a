// Command ovl-fuse is ovl's slim FUSE binary: the daemon that serves a
// stack mounted with the FUSE backend (fusefs.Backend.Mount starts it
// when it lies next to the running program, as `make build` puts it
// beside bin/ovl), and ovl's drop-in mode (package dropin) on its own:
//
//	ovl-fuse -o lowerdir=A:B,upperdir=U,workdir=W MOUNTPOINT
//
// for podman's mount_program. It links only fusefs and the drop-in
// parser, so it starts in less than half of ovl's time.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ovl-dev/ovl/internal/dropin"
	"github.com/ovl-dev/ovl/internal/reexec"
)

func main() {
	if reexec.Init() {
		return // the daemon (fusefs registers its entry point)
	}
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Printf(dropin.Usage, name)
		return
	}
	if len(args) == 0 {
		fmt.Fprintf(os.Stderr, dropin.Usage, name)
		os.Exit(2)
	}
	if err := dropin.Run(context.Background(), args); err != nil {
		fmt.Fprintln(os.Stderr, name+": "+err.Error())
		var usage *dropin.UsageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
