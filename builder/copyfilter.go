package builder

import (
	"regexp"

	"github.com/ovl-dev/ovl/vagga"
)

// copyFilter decides which entries of a !Copy source directory are
// copied, and so hashed into the step's key: what is left out can change
// without rebuilding the step. It matches vagga's rules on the path of an
// entry relative to the source, slash-separated; an entry left out takes
// everything below it along.
//
// For now it has vagga's default rule for .vagga alone: the project's
// build state (layers, roots) must never be copied into a container, or a
// `!Copy source: /work` copies the layer it is writing into itself,
// without end. vagga's other default rules (.git, .hg, .svn, *~, *.bak,
// *.orig, #*#) and the step's ignore-regex and include-regex options
// belong here too (issue 14).
type copyFilter struct {
	ignore *regexp.Regexp // entries matching are left out
}

// defaultIgnore is the part of vagga's default ignore-regex ovl applies.
var defaultIgnore = regexp.MustCompile(`(^|/)\.vagga($|/)`)

// newCopyFilter returns the filter of step s.
func newCopyFilter(s *vagga.CopyStep) copyFilter {
	return copyFilter{ignore: defaultIgnore}
}

// skip reports whether the entry at rel (relative to the source) is left
// out.
func (f copyFilter) skip(rel string) bool { return f.ignore.MatchString(rel) }
