// Package mountinfo reads the mount table of the caller's mount namespace,
// /proc/self/mountinfo (proc(5)). It is the one parser of that file ovl's
// packages share: finding what is mounted on a target, and refusing to
// remove a directory something is still mounted in.
package mountinfo

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Path is the mount table of the calling process's mount namespace.
const Path = "/proc/self/mountinfo"

// Entry is one line of mountinfo:
// "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS".
type Entry struct {
	ID         int    // the mount's id (statx STATX_MNT_ID gives a file's)
	MountPoint string // unescaped
	// Options are the mount's own options ("rw,nosuid,idmapped"), as
	// opposed to the filesystem's (SuperOptions).
	Options string
	// FSType, Source and SuperOptions are empty on a line without the
	// " - " separator (the kernel always writes it).
	FSType       string
	Source       string // unescaped
	SuperOptions string
}

// Parse reads mountinfo lines from r, in the kernel's order: of several
// mounts on one point, the later is on top. Lines with fewer than five
// fields are skipped.
func Parse(r io.Reader) ([]Entry, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		e := Entry{MountPoint: Unescape(fields[4])}
		e.ID, _ = strconv.Atoi(fields[0])
		if len(fields) > 5 {
			e.Options = fields[5]
		}
		for i := 6; i+2 < len(fields); i++ {
			if fields[i] == "-" {
				e.FSType, e.Source = fields[i+1], Unescape(fields[i+2])
				if i+3 < len(fields) {
					e.SuperOptions = fields[i+3]
				}
				break
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// Read parses the caller's mount table, Path.
func Read() ([]Entry, error) {
	f, err := os.Open(Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", Path, err)
	}
	return entries, nil
}

// Find returns the topmost mount on target (canonical, as mountinfo
// writes it), and false when nothing is mounted there.
func Find(entries []Entry, target string) (Entry, bool) {
	var last Entry
	found := false
	for _, e := range entries {
		if e.MountPoint == target && e.FSType != "" {
			last, found = e, true
		}
	}
	return last, found
}

// Under returns the mount points at or below dir (canonical), in the
// kernel's order.
func Under(entries []Entry, dir string) []string {
	var out []string
	for _, e := range entries {
		if e.MountPoint == dir || strings.HasPrefix(e.MountPoint, strings.TrimSuffix(dir, "/")+"/") {
			out = append(out, e.MountPoint)
		}
	}
	return out
}

// Unescape undoes mountinfo's escapes: space, tab, newline and backslash
// in a path are written as \040, \011, \012 and \134.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
