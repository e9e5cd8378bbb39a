package bench

import (
	"strings"
	"testing"
)

// A trace as the tracing instance's trace file shows it: the last
// requests of another mount that had number 43, another FUSE mount (40)
// on the machine, the bench's mount as 43 (its INIT and a LOOKUP before
// the bench marks it), its unmount, and a new mount that got 43 next.
const sampleTrace = `# tracer: nop
#
           other-13900   [000] ...1. 13424.640000: fuse_request_send: connection 43 req 90 opcode 15 (FUSE_READ) len 80
           other-13900   [000] ...1. 13424.640100: fuse_request_send: connection 43 req 92 opcode 38 (FUSE_DESTROY) len 40
             tar-13950   [000] ...1. 13424.644609: fuse_request_send: connection 40 req 73022 opcode 3 (FUSE_GETATTR) len 56
           mount-14000   [001] ...1. 13424.646000: fuse_request_send: connection 43 req 2 opcode 26 (FUSE_INIT) len 104
           mount-14000   [001] ...1. 13424.646010: fuse_request_send: connection 43 req 4 opcode 1 (FUSE_LOOKUP) len 45
       ovl-bench-14000   [000] ..... 13424.646020: tracing_mark_write: ovl-bench mounted 43
            find-14001   [001] ...1. 13424.646138: fuse_request_send: connection 43 req 6 opcode 44 (FUSE_READDIRPLUS) len 80
            find-14001   [001] ...1. 13424.646200: fuse_request_send: connection 43 req 8 opcode 44 (FUSE_READDIRPLUS) len 80
             tar-13950   [000] ...1. 13424.646400: fuse_request_send: connection 40 req 73024 opcode 1 (FUSE_LOOKUP) len 50
       ovl-bench-14000   [000] ..... 13424.646500: tracing_mark_write: ovl-bench released 43
         go-test-14100   [001] ...1. 13424.646600: fuse_request_send: connection 43 req 2 opcode 26 (FUSE_INIT) len 104
         go-test-14100   [001] ...1. 13424.646700: fuse_request_send: connection 43 req 4 opcode 35 (FUSE_CREATE) len 104
`

func TestCountRequests(t *testing.T) {
	got, err := countRequests(strings.NewReader(sampleTrace), map[uint64]bool{43: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"INIT": 1, "READDIRPLUS": 2, "LOOKUP": 1}
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v (connection 40 is another mount's, and so is 43 after the release mark)", got, want)
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
