// Command ovl mounts layer stacks on the fastest backend this kernel and
// this user allow, and runs and builds vagga-style containers on them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ovl-dev/ovl/internal/reexec"
)

func main() {
	if reexec.Init() {
		return
	}
	var err error
	prefix := "ovl: "
	switch {
	case vaggaName(os.Args[0]):
		prefix = "" // vagga's messages stand alone
		err = vaggaMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	case dropinArgs(os.Args[1:]):
		err = dropinRun(context.Background(), os.Args[1:])
	default:
		err = newRootCmd().Execute()
	}
	if err == nil {
		return
	}
	var ex *exitError
	if errors.As(err, &ex) {
		if ex.msg != "" {
			fmt.Fprintln(os.Stderr, prefix+ex.msg)
		}
		os.Exit(ex.code)
	}
	fmt.Fprintln(os.Stderr, prefix+err.Error())
	os.Exit(1)
}

// exitError ends ovl with a chosen status, e.g. the status of a command run
// in a container, or `ovl check`'s 1 for "only copy works". msg, when
// set, is printed first.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
