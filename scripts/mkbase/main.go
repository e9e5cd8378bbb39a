// Command mkbase writes the busybox root filesystem tarball the example
// project's base container starts from (`go run ./scripts/mkbase
// base.tar.gz`; scripts/demo.sh runs it): the same root ovl's tests and
// benchmarks use (internal/busybox), from the host's busybox-static.
package main

import (
	"fmt"
	"os"

	"github.com/ovl-dev/ovl/internal/busybox"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkbase DEST.tar.gz")
		os.Exit(2)
	}
	bb, err := busybox.Find()
	if err == nil {
		err = busybox.WriteTar(os.Args[1], bb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkbase:", err)
		os.Exit(1)
	}
}
