package builder

import (
	"testing"

	"github.com/ovl-dev/ovl/vagga"
)

func mustGlobFilter(t *testing.T, rules ...string) *copyFilter {
	t.Helper()
	f, err := newGlobFilter(rules)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCopyFilterRules checks vagga's rules (build_steps.rst, "rules")
// the way vagga's own path filter tests them: what a path matches, as a
// file and as a directory.
func TestCopyFilterRules(t *testing.T) {
	type c struct {
		path string
		dir  bool
		want match
	}
	const I, X, N = matchInclude, matchIgnore, matchNone
	for _, tc := range []struct {
		rules []string
		cases []c
	}{
		{[]string{"foo"}, []c{{"foo", false, I}, {"foo", true, I}, {"test", false, N}, {"dir/foo", false, I}, {"foo/test", true, I}, {"dir/foo/test", false, I}}},
		{[]string{"*.rs"}, []c{{"test.rs", false, I}, {"dir/subdir/main.rs", false, I}, {"test.py", false, N}, {"test.rs.bak", false, N}, {"dir", true, N}, {".git/test.rs", false, I}}},
		{[]string{"/foo"}, []c{{"foo", false, I}, {"foo", true, I}, {"dir/foo", false, N}, {"foo/test", true, I}, {"dir/foo/test", true, N}}},
		{[]string{"/*.rs"}, []c{{"test.rs", false, I}, {"test.py", false, N}, {"dir/test.rs", false, N}}},
		{[]string{"dir/"}, []c{{"dir", true, I}, {"dir", false, N}, {"dir/test.rs", false, I}, {"dir/subdir", true, I}, {"otherdir/dir", true, I}, {"otherdir/dir", false, N}, {"otherdir/dir/test.py", false, I}}},
		{[]string{"/dir/"}, []c{{"dir", true, I}, {"dir/subdir/test.rs", false, I}, {"otherdir/dir", true, N}, {"otherdir/dir/test.py", false, N}}},
		{[]string{"!.git/", "*.rs"}, []c{{"test.rs", false, I}, {".git", false, N}, {".git", true, X}, {".git/test.rs", false, I}}},
		{[]string{"!target/build", "*.rs"}, []c{{"target/test.rs", false, I}, {"target", true, N}, {"target/build", false, X}, {"target/build", true, X}}},
		{[]string{"!*.py", "/dir"}, []c{{"test.py", true, X}, {"dir", true, I}, {"dir/test.rs", false, I}, {"dir/test.py", false, X}}},
		{[]string{`\!dir/`}, []c{{"!dir", false, N}, {"!dir", true, I}, {"!dir/test.rs", false, I}, {"dir", true, N}}},
		{[]string{`dir\*/`}, []c{{"dirx", true, N}, {"dir*", true, I}, {"dir*/test.rs", false, I}}},
		{[]string{"!.git/", ".git/"}, []c{{".git", true, I}, {".git", false, N}}},
		{[]string{"**/foo"}, []c{{"foo", true, I}, {"foo/test.rs", false, I}, {"foo/subdir/test.rs", false, I}}},
		{[]string{"dir/**/foo"}, []c{{"dir", true, I}, {"dir", false, N}, {"dir/test.rs", false, N}, {"dir/subdir", true, I}, {"dir/foo", false, I}, {"dir/subdir/foo", true, I}, {"dir/subdir/foo/test.rs", false, I}}},
		{[]string{"dir/**"}, []c{{"dir", true, I}, {"dir", false, I}, {"dir/test.rs", false, I}, {"dir/subdir/test.rs", false, I}}},
	} {
		f := mustGlobFilter(t, tc.rules...)
		for _, cs := range tc.cases {
			if got, _ := f.matchRules(cs.path, cs.dir); got != cs.want {
				t.Errorf("rules %q: %q (dir %v) = %v, want %v", tc.rules, cs.path, cs.dir, got, cs.want)
			}
		}
	}
}

// TestCopyFilterDefaults: vagga's default ignore-regex leaves out
// version control directories and editor backups; include-regex takes
// only what it matches (and the directories on the way, which walkFrom
// makes); rules start with vagga's default rules unless
// no-default-rules.
func TestCopyFilterDefaults(t *testing.T) {
	def, err := newCopyFilter(vagga.PathFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{".git": false, "a/.hg": false, ".svn": false, ".vagga": false, "x~": false,
		"a.bak": false, "b.orig": false, "#x#": false, "d/#x#": true, "src/main.go": true, ".gitignore": true} {
		if got, _ := def.decide(rel, false); got != want {
			t.Errorf("default: %q taken %v, want %v", rel, got, want)
		}
	}
	inc := `patches/.*\.sql$`
	f, err := newCopyFilter(vagga.PathFilter{IncludeRegex: &inc})
	if err != nil {
		t.Fatal(err)
	}
	if y, d := f.decide("patches", true); y || !d {
		t.Errorf("include-regex: directory patches taken %v, walked into %v; want not taken, walked into", y, d)
	}
	if y, _ := f.decide("patches/1.sql", false); !y {
		t.Error("include-regex: patches/1.sql not taken")
	}
	if y, _ := f.decide(".git/patches/1.sql", false); y {
		t.Error("include-regex: an ignored path taken")
	}
	rules, err := newCopyFilter(vagga.PathFilter{Rules: []string{"/"}})
	if err != nil {
		t.Fatal(err)
	}
	if y, _ := rules.decide(".git", true); y {
		t.Error(`rules ["/"]: .git taken despite the default rules`)
	}
	if y, _ := rules.decide("src/a", false); !y {
		t.Error(`rules ["/"]: src/a not taken`)
	}
	bare, err := newCopyFilter(vagga.PathFilter{Rules: []string{"/"}, NoDefaultRules: true})
	if err != nil {
		t.Fatal(err)
	}
	if y, _ := bare.decide(".git/config", false); !y {
		t.Error("no-default-rules: .git/config not taken")
	}
	none, err := newCopyFilter(vagga.PathFilter{Rules: []string{"!dir/"}, NoDefaultRules: true})
	if err != nil {
		t.Fatal(err)
	}
	if y, d := none.decide("a", false); y || d {
		t.Error(`rules ["!dir/"] match nothing`)
	}
}
