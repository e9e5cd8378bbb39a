package runner

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// idMap is an ordinary user's subordinate id ranges (/etc/subuid,
// /etc/subgid), mapped into the container after the user itself: the
// user is root inside, the range is uids 1..count.
type idMap struct {
	uid, gid           int
	uidStart, uidCount int
	gidStart, gidCount int
}

// hostIDMap returns the caller's subordinate ranges when it is an
// ordinary user who has both and newuidmap/newgidmap are installed; nil
// otherwise (root, or only the user's own id can be mapped).
func hostIDMap() *idMap {
	if os.Geteuid() == 0 {
		return nil
	}
	if _, err := exec.LookPath("newuidmap"); err != nil {
		return nil
	}
	if _, err := exec.LookPath("newgidmap"); err != nil {
		return nil
	}
	m := &idMap{uid: os.Geteuid(), gid: os.Getegid()}
	names := []string{strconv.Itoa(m.uid)}
	if u, err := user.LookupId(names[0]); err == nil {
		names = append(names, u.Username)
	}
	var ok bool
	if m.uidStart, m.uidCount, ok = subRange("/etc/subuid", names); !ok {
		return nil
	}
	if m.gidStart, m.gidCount, ok = subRange("/etc/subgid", names); !ok {
		return nil
	}
	return m
}

// subRange finds the first range of file ("name:start:count" lines)
// belonging to one of names.
func subRange(file string, names []string) (start, count int, ok bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(parts) != 3 {
			continue
		}
		for _, n := range names {
			if parts[0] != n {
				continue
			}
			s, err1 := strconv.Atoi(parts[1])
			c, err2 := strconv.Atoi(parts[2])
			if err1 == nil && err2 == nil && c > 0 {
				return s, c, true
			}
		}
	}
	return 0, 0, false
}

// apply maps the ranges into the user namespace of process pid.
func (m *idMap) apply(pid int) error {
	p := strconv.Itoa(pid)
	uid := []string{p, "0", strconv.Itoa(m.uid), "1", "1", strconv.Itoa(m.uidStart), strconv.Itoa(m.uidCount)}
	gid := []string{p, "0", strconv.Itoa(m.gid), "1", "1", strconv.Itoa(m.gidStart), strconv.Itoa(m.gidCount)}
	if out, err := exec.Command("newuidmap", uid...).CombinedOutput(); err != nil {
		return fmt.Errorf("newuidmap %s: %w: %s", strings.Join(uid, " "), err, out)
	}
	if out, err := exec.Command("newgidmap", gid...).CombinedOutput(); err != nil {
		return fmt.Errorf("newgidmap %s: %w: %s", strings.Join(gid, " "), err, out)
	}
	return nil
}
