package bench

import (
	"context"
	"os"

	"ovl/fusefs"
)

// fusePassthroughEnv is the knob fusefs reads at Mount: "0" turns FUSE
// passthrough off. Passthrough is on by default where the daemon may use
// it (CAP_SYS_ADMIN in the initial namespace, kernel 6.9+).
const fusePassthroughEnv = "OVL_FUSE_PASSTHROUGH"

// fuseContestants are ovl's FUSE backend with passthrough as fusefs
// decides (on where privileged) and with passthrough forced off.
func fuseContestants() []*Contestant {
	on := ovlContestant("ovl fuse", fusefs.NewBackend())
	on.Note = "FUSE passthrough on where the daemon is privileged (root here, kernel 6.9+)"
	off := ovlContestant("ovl fuse no-pt", fusefs.NewBackend())
	off.Note = "FUSE passthrough off (" + fusePassthroughEnv + "=0)"
	off.Env = []string{fusePassthroughEnv + "=0"}
	mount := off.mount
	off.mount = func(ctx context.Context, s Stack) (Mounted, error) {
		old, had := os.LookupEnv(fusePassthroughEnv)
		os.Setenv(fusePassthroughEnv, "0")
		defer func() {
			if had {
				os.Setenv(fusePassthroughEnv, old)
			} else {
				os.Unsetenv(fusePassthroughEnv)
			}
		}()
		return mount(ctx, s)
	}
	return []*Contestant{on, off}
}
