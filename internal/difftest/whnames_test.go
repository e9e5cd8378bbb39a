package difftest

import (
	"path"
	"strings"
	"testing"
)

// TestGenerateMeetsWhNames checks that sequences use names starting with
// ".wh." (".wh.NAME" and the OCI markers) in every operation that takes
// a name: the differential test would have found that fusefs read them
// as whiteouts in the kernel's format.
func TestGenerateMeetsWhNames(t *testing.T) {
	seen := map[OpKind]map[string]bool{}
	note := func(k OpKind, p string) {
		for _, c := range strings.Split(p, "/") {
			if !strings.HasPrefix(c, ".wh.") {
				continue
			}
			kind := ".wh.NAME"
			if strings.HasPrefix(c, ".wh..wh.") {
				kind = ".wh..wh."
			}
			if seen[k] == nil {
				seen[k] = map[string]bool{}
			}
			seen[k][kind] = true
		}
	}
	for seed := int64(1); seed <= 400; seed++ {
		for _, op := range Generate(seed, 30) {
			note(op.Kind, op.Path)
			note(op.Kind, op.Path2)
			note(op.Kind, path.Clean("/"+op.Target))
		}
	}
	for k := OpKind(0); k < opCount; k++ {
		switch k {
		case OpFdRead, OpFdWrite, OpFdStat, OpClose:
			continue // no name: they act on a descriptor
		}
		for _, kind := range []string{".wh.NAME", ".wh..wh."} {
			if !seen[k][kind] {
				t.Errorf("%s never meets a name like %s in 400 sequences", k, kind)
			}
		}
	}
}
