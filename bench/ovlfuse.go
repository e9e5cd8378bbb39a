package bench

import (
	"context"
	"os"

	"github.com/ovl-dev/ovl/fusefs"
)

// fuseContestants are ovl's FUSE backend as it runs by default (the
// kernel sends no opens; copy-up at a file's first change) and with
// fusefs.EnvStrictOpen=1 (copy-up at open for writing, as the kernel
// does, which costs a round trip per open and buys FUSE passthrough).
func fuseContestants() []*Contestant {
	def := ovlContestant("ovl fuse", fusefs.NewBackend())
	def.FUSE = true
	def.Podman = podmanOvl
	def.Note = "default: no OPEN round trips, copy-up at a file's first change"
	strict := ovlContestant("ovl fuse strict-open", fusefs.NewBackend())
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
