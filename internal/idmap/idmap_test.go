package idmap

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Range
		bad  bool
	}{
		{"0-65535", Range{0, 65535}, false},
		{"1000", Range{1000, 1000}, false},
		{" 5 - 9 ", Range{5, 9}, false},
		{"9-5", Range{}, true},
		{"a-b", Range{}, true},
		{"-1", Range{}, true},
		{"4294967296", Range{}, true},
	} {
		got, err := ParseRange(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestMatch checks vagga's match_ranges: id 0 is the user's own, the
// other requested ids take the subordinate ids in order, across ranges.
func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  []Range
		sub  []Range
		want []Extent
		err  error
	}{
		{"default onto one range", DefaultRanges, []Range{{100000, 165535}},
			[]Extent{{0, 1002, 1}, {1, 100000, 65535}}, nil},
		{"default onto two ranges", DefaultRanges, []Range{{200000, 200099}, {300000, 399999}},
			[]Extent{{0, 1002, 1}, {1, 200000, 100}, {101, 300000, 65435}}, nil},
		{"two requested ranges", []Range{{0, 0}, {1000, 1009}}, []Range{{100000, 100004}, {200000, 200009}},
			[]Extent{{0, 1002, 1}, {1000, 100000, 5}, {1005, 200000, 5}}, nil},
		{"too few", DefaultRanges, []Range{{100000, 100999}}, nil, ErrTooFew},
		{"only 0", []Range{{0, 0}}, nil, []Extent{{0, 1002, 1}}, nil},
	} {
		got, err := match(tc.req, 1002, tc.sub)
		if !errors.Is(err, tc.err) || (tc.err == nil && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("%s: match = %v, %v; want %v, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestTranslate: an owner a container with its own uids sets is chowned,
// in the namespace of every subordinate id (Full), to the id that lands
// on the same host id.
func TestTranslate(t *testing.T) {
	s := &Subordinate{User: "u", UID: 1002, GID: 1002, UIDs: []Range{{100000, 165535}}, GIDs: []Range{{100000, 165535}}}
	full := s.Full()
	def, err := s.Map(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	custom, err := s.Map([]Range{{0, 0}, {1000, 1999}}, []Range{{0, 0}, {1000, 1999}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m            *Map
		uid, gid     uint32
		wantU, wantG uint32
		err          error
	}{
		{def, 0, 0, 0, 0, nil},
		{def, 100, 101, 100, 101, nil},
		{def, 65535, 65535, 65535, 65535, nil},
		{def, 65536, 0, 0, 0, ErrUnmapped},
		{custom, 1000, 1001, 1, 2, nil},
		{custom, 100, 0, 0, 0, ErrUnmapped},
	} {
		u, g, err := tc.m.Translate(full, tc.uid, tc.gid)
		if !errors.Is(err, tc.err) || (tc.err == nil && (u != tc.wantU || g != tc.wantG)) {
			t.Errorf("Translate(%d:%d) under %v = %d:%d, %v; want %d:%d, %v", tc.uid, tc.gid, tc.m, u, g, err, tc.wantU, tc.wantG, tc.err)
		}
	}
	if h, ok := toHost(full.UIDs, 65536); !ok || h != 165535 {
		t.Errorf("the full map's id 65536 = host %d, %v; want 165535", h, ok)
	}
}

func TestReadRanges(t *testing.T) {
	p := filepath.Join(t.TempDir(), "subuid")
	data := "# comment\nother:100000:65536\nu:200000:10\n1002:300000:5\nu:bad:5\nu:400000:0\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readRanges(p, []string{"1002", "u"}, 1002)
	want := []Range{{200000, 200009}, {300000, 300004}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("readRanges = %v, %v; want %v", got, err, want)
	}
	if got, err := readRanges(filepath.Join(t.TempDir(), "none"), []string{"u"}, 1002); err != nil || got != nil {
		t.Errorf("missing file: %v, %v; want nothing", got, err)
	}
	if _, err := readRanges(p, []string{"u"}, 200005); !errors.Is(err, ErrNoSubordinate) {
		t.Errorf("a range holding the own id: %v, want ErrNoSubordinate", err)
	}
}
