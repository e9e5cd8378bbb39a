package runner_test

import (
	"context"
	"fmt"
	"os"

	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
)

// A writable run with a Snapshot volume, on the backend the selector
// picks: what `ovl run --writable --volume /etc=snapshot,size=10M` does.
func ExampleRun() {
	d, err := selector.Select(context.Background(), selector.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := runner.Run(context.Background(), runner.Config{
		Layers:   []string{"/var/lib/containers/app/root"},
		Writable: true,
		Volumes:  []runner.Volume{{Path: "/etc", Kind: runner.Snapshot, Size: 10 << 20, UID: -1, GID: -1}},
		Env:      []string{"LANG=C.UTF-8"},
		Args:     []string{"sh", "-c", "echo changed > /etc/motd; make test"},
		Decision: d,
		Stdin:    os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("exit status", res.ExitCode, "on", res.Backend)
}
