package runner

import (
	"errors"
	"os"

	"github.com/ovl-dev/ovl/internal/idmap"
)

// containerIDs returns the id map of a run (internal/idmap says how ids
// are mapped): for an ordinary user, its subordinate ids mapped onto the
// container's uids and gids (vagga's settings; nil: 0-65535). It returns
// nil for root, whose runs map nothing, and for a user without
// subordinate ids, whose runs get the single-id map of initSysProcAttr
// (idmap.Warn says so, once). Too few subordinate ids for the container
// is an error.
func containerIDs(uids, gids []idmap.Range) (*idmap.Map, error) {
	if os.Geteuid() == 0 {
		return nil, nil
	}
	m, err := idmap.ForContainer(uids, gids)
	if errors.Is(err, idmap.ErrNoSubordinate) {
		idmap.Warn(err)
		return nil, nil
	}
	return m, err
}
