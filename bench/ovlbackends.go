package bench

import (
	"context"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// OvlContestants returns ovl's backends as contestants, driven through
// the backend.Backend interface: native, fuse (by default and with
// strict opens) and copy. The FUSE mounts are served by the daemon users
// of the ovl binary at ovl get (FUSEDaemon).
func OvlContestants(ovl string) []*Contestant {
	cs := []*Contestant{ovlContestant("ovl native", native.New())}
	cs = append(cs, fuseContestants(FUSEDaemon(ovl))...)
	cp := ovlContestant("ovl copy", copyback.New())
	cp.Copy = true
	return append(cs, cp)
}

func ovlContestant(name string, b backend.Backend) *Contestant {
	return &Contestant{
		Name:    name,
		Backend: b.Name(),
		mount: func(ctx context.Context, s Stack) (Mounted, error) {
			m, err := b.Mount(ctx, layer.Spec{Lowers: s.Lowers, Upper: s.Upper, Work: s.Work, Target: s.Target})
			if err != nil {
				return nil, err
			}
			return backendMount{m}, nil
		},
	}
}

type backendMount struct{ m backend.Mount }

func (b backendMount) Dir() string    { return b.m.Target() }
func (b backendMount) Unmount() error { return b.m.Unmount() }
