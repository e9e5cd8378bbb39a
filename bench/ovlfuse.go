package bench

import (
	"context"
	"os"

	"github.com/ovl-dev/ovl/fusefs"
)

// FUSEDaemon is the binary that serves the FUSE mounts of the ovl binary
// at ovl, as its users get it: the slim ovl-fuse beside it (make build
// puts it there; also what the podman workloads give as mount_program),
// else ovl itself. Without ovl (""), the daemon is this program,
// re-executed (fusefs.DefaultDaemon).
func FUSEDaemon(ovl string) string {
	if ovl == "" {
		return ""
	}
	if d := fusefs.DaemonBeside(ovl); d != "" {
		return d
	}
	return ovl
}

// fuseContestants are ovl's FUSE backend, served by daemon (see
// FUSEDaemon), as it runs by default (the kernel sends no opens; copy-up
// at a file's first change) and with fusefs.EnvStrictOpen=1 (copy-up at
// open for writing, as the kernel does, which costs a round trip per
// open and buys FUSE passthrough).
func fuseContestants(daemon string) []*Contestant {
	def := ovlContestant("ovl fuse", &fusefs.Backend{Daemon: daemon})
	def.FUSE = true
	def.Podman = podmanOvl
	served := "this program, re-executed"
	if daemon != "" {
		served = daemon
	}
	def.Note = "default: no OPEN round trips, copy-up at a file's first change; daemon: " + served
	strict := ovlContestant("ovl fuse strict-open", &fusefs.Backend{Daemon: daemon})
	strict.Note = "copy-up at open as the kernel (" + fusefs.EnvStrictOpen + "=1): a round trip per open; FUSE passthrough where the daemon is privileged (root, kernel 6.9+)"
	strict.FUSE = true
	strict.Env = []string{fusefs.EnvStrictOpen + "=1"}
	mount := strict.mount
	strict.mount = func(ctx context.Context, s Stack) (Mounted, error) {
		old, had := os.LookupEnv(fusefs.EnvStrictOpen)
		os.Setenv(fusefs.EnvStrictOpen, "1")
		defer func() {
			if had {
				os.Setenv(fusefs.EnvStrictOpen, old)
			} else {
				os.Unsetenv(fusefs.EnvStrictOpen)
			}
		}()
		return mount(ctx, s)
	}
	return []*Contestant{def, strict}
}
