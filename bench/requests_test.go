package bench

import (
	"strings"
	"testing"
)

// A trace as the tracing instance's trace file shows it: events of the
// bench's connection 43 and of another FUSE mount (40) on the machine.
const sampleTrace = `# tracer: nop
#
             tar-13950   [000] ...1. 13424.644609: fuse_request_send: connection 40 req 73022 opcode 3 (FUSE_GETATTR) len 56
            find-14001   [001] ...1. 13424.646090: fuse_request_send: connection 43 req 2 opcode 26 (FUSE_INIT) len 104
            find-14001   [001] ...1. 13424.646138: fuse_request_send: connection 43 req 4 opcode 44 (FUSE_READDIRPLUS) len 80
            find-14001   [001] ...1. 13424.646200: fuse_request_send: connection 43 req 6 opcode 44 (FUSE_READDIRPLUS) len 80
            find-14001   [001] ...1. 13424.646300: fuse_request_send: connection 43 req 8 opcode 1 (FUSE_LOOKUP) len 45
             tar-13950   [000] ...1. 13424.646400: fuse_request_send: connection 40 req 73024 opcode 1 (FUSE_LOOKUP) len 50
`

func TestCountRequests(t *testing.T) {
	got, err := countRequests(strings.NewReader(sampleTrace), map[uint64]bool{43: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"INIT": 1, "READDIRPLUS": 2, "LOOKUP": 1}
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v (connection 40 is another mount's)", got, want)
	}
	for op, n := range want {
		if got[op] != n {
			t.Errorf("%s: %d, want %d (all: %v)", op, got[op], n, got)
		}
	}
	if s := FormatRequests(got); s != "4: READDIRPLUS 2, INIT 1, LOOKUP 1" {
		t.Errorf("FormatRequests = %q", s)
	}
}
