package difftest

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWidenIsDeterministic: Widen gives the same sequence for the same
// seed, keeps Generate's operations in their order, and draws each of
// its kinds: changes to lower files, interleaved listings (of many files
// too), ops by a second uid, set-id mknod; a read-only stack gets no
// lower changes.
func TestWidenIsDeterministic(t *testing.T) {
	base := Generate(42, 400)
	a, b := Widen(42, base, false), Widen(42, base, false)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("Widen(42) gave two different sequences")
	}
	var kept []OpKind
	seen := map[string]bool{}
	for _, op := range a {
		switch {
		case op.Kind >= extraOpBase:
			seen[op.Kind.String()] = true
			if op.Kind == OpListInterleaved && op.Count > 0 {
				seen["list-many"] = true
			}
			continue
		case op.User != 0:
			seen["other-uid"] = true
		case op.Kind == OpMknod && op.Mode&unix.S_IFMT == unix.S_IFREG && op.Mode&(unix.S_ISUID|unix.S_ISGID) != 0:
			seen["setid-mknod"] = true
		}
		kept = append(kept, op.Kind)
	}
	var want []OpKind
	for _, op := range base {
		want = append(want, op.Kind)
	}
	if !reflect.DeepEqual(kept, want) {
		t.Error("Widen changed the kinds or order of Generate's operations")
	}
	for _, k := range []string{"lower-grow", "lower-swap", "list-interleaved", "list-many", "other-uid", "setid-mknod"} {
		if !seen[k] {
			t.Errorf("400 ops of seed 42 have no %s", k)
		}
	}
	for _, op := range Widen(42, base, true) {
		if op.Kind == OpLowerGrow || op.Kind == OpLowerSwap {
			t.Errorf("a read-only stack got %s", op)
		}
	}
}
