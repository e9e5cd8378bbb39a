package builder

import (
	"context"
	"path/filepath"

	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
)

// RunnerFunc returns the RunFunc that runs command steps in containers
// with the runner, mounting their layers as d decided. Transient copies
// (copy backend) go under the project's .vagga/.transient.
func RunnerFunc(d selector.Decision, projectDir string) RunFunc {
	return func(ctx context.Context, x Exec) error {
		res, err := runner.Run(ctx, runner.Config{
			Layers: x.Layers, Writable: x.Writable, KeepChanges: x.KeepChanges,
			Env: x.Env, Workdir: x.Workdir, BindWork: x.BindWork, Args: x.Args,
			Decision: d, Stdin: x.Stdin, Stdout: x.Stdout, Stderr: x.Stderr,
			Name: "build", TransientDir: filepath.Join(projectDir, ".vagga", ".transient"),
			UIDs: x.UIDs, GIDs: x.GIDs, Volumes: x.Volumes, User: x.User, HostFiles: x.HostFiles, KeepTmp: x.KeepTmp,
			IsolateNetwork: x.IsolateNetwork,
		})
		if err != nil {
			return err
		}
		if res.ExitCode != 0 || res.Signal != 0 {
			e := &ExitError{Code: res.ExitCode}
			if res.Signal != 0 {
				e.Signal = res.Signal.String()
			}
			return e
		}
		return nil
	}
}
