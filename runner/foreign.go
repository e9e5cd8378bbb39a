package runner

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/selector"
)

// foreignRootNote says, for a writable run whose command failed, why a
// write may have been refused: a user namespace maps only some ids, and
// the root's files belong to an id it does not map, which the command
// sees as the overflow id ("nobody") and may not change. A shell's bare
// "Permission denied" does not tell. It returns "" where that is not
// the case: the root is the caller's own (or mapped), the run makes no
// user namespace, or the copy backend gave the command a copy of its
// own.
func foreignRootNote(cfg Config, ids *idmap.Map) string {
	if !cfg.Writable || cfg.Decision.Backend == backend.Copy || cfg.Decision.Isolation != selector.IsolateUserns {
		return ""
	}
	fi, err := os.Stat(cfg.Layers[0])
	if err != nil {
		return ""
	}
	owner := fi.Sys().(*syscall.Stat_t).Uid
	if hostMapped(owner, ids) {
		return ""
	}
	return fmt.Sprintf("ovl: note: the container root %s belongs to uid %d, which this run's user namespace does not map "+
		"(uid %d runs as root in it): the command sees such files as nobody's and cannot change those only their owner may; "+
		"own the root (e.g. build it as this user), map subordinate ids (/etc/subuid), or run with --backend copy, which gives the command a copy of its own",
		cfg.Layers[0], owner, os.Geteuid())
}

// hostMapped reports whether host uid id is mapped in a run's user
// namespace: by ids (subordinate ranges) when set, else by the maps
// userns.Mappings writes.
func hostMapped(id uint32, ids *idmap.Map) bool {
	if ids != nil {
		for _, e := range ids.UIDs {
			if id >= e.Outside && uint64(id-e.Outside) < uint64(e.Count) {
				return true
			}
		}
		return false
	}
	uids, _, _ := userns.Mappings()
	for _, m := range uids {
		if int64(id) >= int64(m.HostID) && int64(id)-int64(m.HostID) < int64(m.Size) {
			return true
		}
	}
	return false
}

// printNote writes note, if any, on w (the caller's stderr), if any.
func printNote(w io.Writer, note string) {
	if note != "" && w != nil {
		fmt.Fprintln(w, note)
	}
}
