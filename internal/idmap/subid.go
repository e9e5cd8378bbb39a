package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
)

// The files that grant subordinate ids: newuidmap and newgidmap read the
// same ones.
const (
	subuidFile = "/etc/subuid"
	subgidFile = "/etc/subgid"
)

// Subordinate is what the calling user may map: its own ids and its
// subordinate ranges (host ids, in the order the files list them).
type Subordinate struct {
	User       string
	UID, GID   uint32
	UIDs, GIDs []Range
}

// Lookup returns the calling user's subordinate ids. It fails with
// ErrNoSubordinate, saying what is missing and how to add it, when the
// user has no range in /etc/subuid or /etc/subgid, or when newuidmap or
// newgidmap is not installed.
func Lookup() (*Subordinate, error) {
	s := &Subordinate{User: strconv.Itoa(os.Geteuid()), UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	names := []string{s.User}
	if u, err := user.LookupId(s.User); err == nil {
		s.User = u.Username
		names = append(names, u.Username)
	}
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s is not installed (Debian package uidmap)", ErrNoSubordinate, tool)
		}
	}
	var err error
	if s.UIDs, err = readRanges(subuidFile, names, s.UID); err != nil {
		return nil, err
	}
	if s.GIDs, err = readRanges(subgidFile, names, s.GID); err != nil {
		return nil, err
	}
	var missing []string
	if len(s.UIDs) == 0 {
		missing = append(missing, subuidFile)
	}
	if len(s.GIDs) == 0 {
		missing = append(missing, subgidFile)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: no range for %s in %s (root can add one: a line %s:100000:65536 in %s and %s, or `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s`)",
			ErrNoSubordinate, s.User, strings.Join(missing, " and "), s.User, subuidFile, subgidFile, s.User)
	}
	return s, nil
}

// readRanges returns the ranges file grants to one of names (a login
// name or a uid, as newuidmap accepts), in file order. Lines that do not
// parse are skipped, as comments are. A range holding the user's own id
// own is an error: vagga refuses it too, since the own id is mapped as 0.
func readRanges(file string, names []string, own uint32) ([]Range, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoSubordinate, err)
	}
	defer f.Close()
	var out []Range
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 || !contains(names, parts[0]) {
			continue
		}
		start, err1 := strconv.ParseUint(parts[1], 10, 32)
		count, err2 := strconv.ParseUint(parts[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count-1 > 1<<32-1 {
			continue
		}
		r := Range{uint32(start), uint32(start + count - 1)}
		if own >= r.First && own <= r.Last {
			return nil, fmt.Errorf("%w: %s:%d: range %s holds your own id %d; list only additional ids", ErrNoSubordinate, file, line, r, own)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Map returns the map of a container that asks for the ranges uids and
// gids (nil: DefaultRanges), as vagga makes it: id 0 is the user, the
// other ids take the subordinate ids in order. It fails with ErrTooFew
// when the subordinate ranges are smaller than what is asked.
func (s *Subordinate) Map(uids, gids []Range) (*Map, error) {
	if uids == nil {
		uids = DefaultRanges
	}
	if gids == nil {
		gids = DefaultRanges
	}
	u, err := match(uids, s.UID, s.UIDs)
	if err != nil {
		return nil, fmt.Errorf("uids: %w (give %s more ids in %s, or ask for fewer with uids: in vagga.yaml)", err, s.User, subuidFile)
	}
	g, err := match(gids, s.GID, s.GIDs)
	if err != nil {
		return nil, fmt.Errorf("gids: %w (give %s more ids in %s, or ask for fewer with gids: in vagga.yaml)", err, s.User, subgidFile)
	}
	return &Map{UIDs: u, GIDs: g}, nil
}

// Full returns the map of every id the user may map, numbered as a
// container numbers them: 0 is the user, 1, 2, … the subordinate ids in
// order. A container's map (Map) is a part of it; a process in it can
// read, copy, chown and remove the files of every container of the user.
func (s *Subordinate) Full() *Map {
	u, _ := match([]Range{{0, uint32(min(total(s.UIDs), 1<<32-2))}}, s.UID, s.UIDs)
	g, _ := match([]Range{{0, uint32(min(total(s.GIDs), 1<<32-2))}}, s.GID, s.GIDs)
	return &Map{UIDs: u, GIDs: g}
}

// ForContainer is Lookup, then Map: the calling user's map for a
// container asking for uids and gids (nil: DefaultRanges).
func ForContainer(uids, gids []Range) (*Map, error) {
	s, err := Lookup()
	if err != nil {
		return nil, err
	}
	return s.Map(uids, gids)
}

// Full is Lookup, then Subordinate.Full.
func Full() (*Map, error) {
	s, err := Lookup()
	if err != nil {
		return nil, err
	}
	return s.Full(), nil
}

var warnOnce sync.Once

// Warn says once per process, on the log (one line), that containers get
// the single-id map for the reason why (an ErrNoSubordinate error):
// owners they set are lost, and a chown to another id fails.
func Warn(why error) {
	warnOnce.Do(func() {
		slog.Warn("containers map only your own uid and gid: ownership changes in them will be lost, and a chown to another owner fails", "why", why.Error())
	})
}
