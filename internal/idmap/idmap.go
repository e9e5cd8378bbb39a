// Package idmap maps user and group ids into the user namespaces an
// ordinary user's containers run in, as vagga does: the user is root
// (id 0) inside, and its subordinate ids (/etc/subuid and /etc/subgid,
// granted by root, applied by newuidmap and newgidmap from Debian's
// uidmap package) are the container's ids 1, 2, … in the order the files
// list them. So a file a container gives to another owner (`chown
// 100:101`) keeps that owner on disk, as one of the user's subordinate
// ids, for every later run that maps the same way.
//
// A user without subordinate ids gets the single-id map: only its own
// uid and gid, as root; owners a container sets are then lost, and a
// chown to any other id fails (EINVAL). Warn says so, once.
package idmap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors, to be tested with errors.Is.
var (
	// ErrNoSubordinate reports that the user has no subordinate ids to
	// map (or no newuidmap to map them with): only the single-id map is
	// possible. The error says which entry is missing.
	ErrNoSubordinate = errors.New("no subordinate ids")
	// ErrTooFew reports subordinate ranges smaller than the ids a
	// container asks for.
	ErrTooFew = errors.New("too few subordinate ids")
	// ErrUnmapped reports an id that a map does not map.
	ErrUnmapped = errors.New("id not mapped")
)

// Range is a range of ids from First to Last, both included, as vagga's
// uids and gids settings write them ("0-65535") and /etc/subuid lists
// them (start and count).
type Range struct{ First, Last uint32 }

// DefaultRanges is what a container maps unless it says otherwise:
// 0-65535, as vagga.
var DefaultRanges = []Range{{0, 65535}}

// ParseRange parses "FIRST-LAST" or a single id "N".
func ParseRange(s string) (Range, error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	first, err := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	if err != nil {
		return Range{}, fmt.Errorf("id range %q: want FIRST-LAST or one id", s)
	}
	last := first
	if isRange {
		if last, err = strconv.ParseUint(strings.TrimSpace(b), 10, 32); err != nil || last < first {
			return Range{}, fmt.Errorf("id range %q: want FIRST-LAST with FIRST <= LAST", s)
		}
	}
	return Range{uint32(first), uint32(last)}, nil
}

// String returns FIRST-LAST, or the one id.
func (r Range) String() string {
	if r.First == r.Last {
		return strconv.FormatUint(uint64(r.First), 10)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

func (r Range) count() uint64 { return uint64(r.Last) - uint64(r.First) + 1 }

// Extent maps Count ids from Inside on to ids from Outside on: one line
// of /proc/PID/uid_map.
type Extent struct{ Inside, Outside, Count uint32 }

// Map is the uid and gid maps of a user namespace.
type Map struct{ UIDs, GIDs []Extent }

// toHost returns the id outside for id inside.
func toHost(ext []Extent, id uint32) (uint32, bool) {
	for _, e := range ext {
		if id >= e.Inside && uint64(id-e.Inside) < uint64(e.Count) {
			return e.Outside + (id - e.Inside), true
		}
	}
	return 0, false
}

// fromHost returns the id inside for id outside.
func fromHost(ext []Extent, id uint32) (uint32, bool) {
	for _, e := range ext {
		if id >= e.Outside && uint64(id-e.Outside) < uint64(e.Count) {
			return e.Inside + (id - e.Outside), true
		}
	}
	return 0, false
}

// Translate returns the ids that uid and gid of a namespace mapped with
// m have in the namespace mapped with to: the ids a process in to must
// chown a file to for it to show as uid:gid in m's namespace. Both maps
// must map onto the same outer ids (the host's); an id that m or to does
// not map is an ErrUnmapped error.
func (m *Map) Translate(to *Map, uid, gid uint32) (uint32, uint32, error) {
	hu, ok1 := toHost(m.UIDs, uid)
	hg, ok2 := toHost(m.GIDs, gid)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%w: owner %d:%d is outside the container's uids %s and gids %s", ErrUnmapped, uid, gid, insideRanges(m.UIDs), insideRanges(m.GIDs))
	}
	u, ok1 := fromHost(to.UIDs, hu)
	g, ok2 := fromHost(to.GIDs, hg)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%w: owner %d:%d (host %d:%d)", ErrUnmapped, uid, gid, hu, hg)
	}
	return u, g, nil
}

// insideRanges lists the ids inside that ext maps, for messages.
func insideRanges(ext []Extent) string {
	var parts []string
	for _, e := range ext {
		parts = append(parts, Range{e.Inside, e.Inside + e.Count - 1}.String())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// String returns the map as newuidmap's and newgidmap's arguments show
// it: "uid 0:1000:1 1:100000:65535; gid ...".
func (m *Map) String() string {
	return "uid " + extentArgs(m.UIDs, ":") + "; gid " + extentArgs(m.GIDs, ":")
}

func extentArgs(ext []Extent, sep string) string {
	var parts []string
	for _, e := range ext {
		parts = append(parts, fmt.Sprintf("%d%s%d%s%d", e.Inside, sep, e.Outside, sep, e.Count))
	}
	return strings.Join(parts, " ")
}

// match maps the ranges a container asks for (inside) onto own, the
// caller's id, for inside id 0, and then onto the subordinate ranges
// (host ids) in order, as vagga's match_ranges: id 0 of a requested range
// is the caller's own; the others take the subordinate ids one by one.
// It fails with ErrTooFew when the subordinate ids run out.
func match(req []Range, own uint32, sub []Range) ([]Extent, error) {
	out := []Extent{{Inside: 0, Outside: own, Count: 1}}
	si := 0
	var used uint64 // of sub[si]
	for _, r := range req {
		first, n := uint64(r.First), r.count()
		if first == 0 {
			first, n = 1, n-1
		}
		for n > 0 {
			if si == len(sub) {
				return nil, fmt.Errorf("%w: the container asks for ids %s, the subordinate ranges %s hold %d",
					ErrTooFew, rangesString(req), rangesString(sub), total(sub))
			}
			avail := sub[si].count() - used
			c := min(n, avail, 1<<32-1)
			out = append(out, Extent{Inside: uint32(first), Outside: uint32(uint64(sub[si].First) + used), Count: uint32(c)})
			first, n, used = first+c, n-c, used+c
			if used == sub[si].count() {
				si, used = si+1, 0
			}
		}
	}
	return out, nil
}

func total(rs []Range) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.count()
	}
	return n
}

func rangesString(rs []Range) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.String())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
