package mountinfo

import (
	"slices"
	"strings"
	"testing"
)

const sample = `22 1 0:21 / /proc rw,nosuid - proc proc rw
65 27 0:43 / /tmp/a\040b rw,relatime shared:5 - overlay none rw,lowerdir=/l
66 65 0:44 / /tmp/a\040b rw - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0
67 66 0:46 / /tmp/a\040b/proc rw - proc proc rw
70 27 0:45 / /mnt/x rw - tmpfs tmp\011fs rw
71 27 0:47 / /tmp/ab rw - tmpfs tmpfs rw
72 27 8:1 /var/l /tmp/mapped rw,relatime,idmapped - ext4 /dev/sda1 rw
`

func TestFind(t *testing.T) {
	entries, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target, wantType, wantSource, wantOpts string
		found                                  bool
	}{
		{"/tmp/a b", "fuse.fuse-overlayfs", "fuse-overlayfs", "rw,user_id=0", true}, // the topmost of two
		{"/mnt/x", "tmpfs", "tmp\tfs", "rw", true},
		{"/mnt", "", "", "", false},
	}
	for _, tt := range tests {
		e, found := Find(entries, tt.target)
		if found != tt.found || e.FSType != tt.wantType || e.Source != tt.wantSource || e.SuperOptions != tt.wantOpts {
			t.Errorf("Find(%q) = %+v, %v; want type %q source %q options %q found %v", tt.target, e, found, tt.wantType, tt.wantSource, tt.wantOpts, tt.found)
		}
	}
}

// TestMountOptions reads each mount's id and its own options (an
// idmapped mount says so there), apart from the filesystem's.
func TestMountOptions(t *testing.T) {
	entries, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := Find(entries, "/tmp/mapped")
	if !ok || e.ID != 72 || e.Options != "rw,relatime,idmapped" || e.SuperOptions != "rw" {
		t.Errorf("Find(/tmp/mapped) = %+v, %v; want id 72, options rw,relatime,idmapped, super options rw", e, ok)
	}
}

func TestUnder(t *testing.T) {
	entries, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir  string
		want []string
	}{
		{"/tmp/a b", []string{"/tmp/a b", "/tmp/a b", "/tmp/a b/proc"}}, // not /tmp/ab
		{"/tmp/a", nil},
		{"/mnt", []string{"/mnt/x"}},
		{"/", []string{"/proc", "/tmp/a b", "/tmp/a b", "/tmp/a b/proc", "/mnt/x", "/tmp/ab", "/tmp/mapped"}},
	}
	for _, tt := range tests {
		if got := Under(entries, tt.dir); !slices.Equal(got, tt.want) {
			t.Errorf("Under(%q) = %q, want %q", tt.dir, got, tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:          "/plain",
		`/a\040b`:         "/a b",
		`/a\134b\012c`:    "/a\\b\nc",
		`/end\04`:         `/end\04`, // too short to be an escape
		`/not\999an\040x`: `/not\999an x`,
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadListsProc(t *testing.T) {
	entries, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(Under(entries, "/proc")) == 0 {
		t.Errorf("Read() lists no mount at or below /proc: %+v", entries)
	}
}
