package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FUSE request counts (--requests) come from the kernel's own
// fuse:fuse_request_send tracepoint (recent kernels; 6.18 has it), read through a tracing
// instance of the bench's own, so neither daemon needs a hook and both
// FUSE contestants are counted the same way. The event carries the
// connection (the mount's device number), so requests to other FUSE
// mounts on the machine are left out.

const tracefs = "/sys/kernel/tracing"

// reqTracer records fuse_request_send events into a tracing instance.
type reqTracer struct {
	dir string
}

// newReqTracer makes a tracing instance for FUSE requests, mounting
// tracefs where it is not mounted yet. It needs root and a kernel with
// the fuse tracepoints.
func newReqTracer() (*reqTracer, error) {
	if _, err := os.Stat(filepath.Join(tracefs, "instances")); err != nil {
		if merr := unix.Mount("tracefs", tracefs, "tracefs", 0, ""); merr != nil {
			return nil, fmt.Errorf("tracefs is not mounted at %s and mounting it failed: %w", tracefs, merr)
		}
	}
	if _, err := os.Stat(filepath.Join(tracefs, "events", "fuse", "fuse_request_send")); err != nil {
		return nil, errors.New("this kernel has no fuse:fuse_request_send tracepoint (a recent kernel's): no FUSE request counts")
	}
	dir := filepath.Join(tracefs, "instances", fmt.Sprintf("ovl-bench-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("make tracing instance %s: %w", dir, err)
	}
	t := &reqTracer{dir: dir}
	// 64 MiB a CPU: an untar of 11,000 files is ~150,000 events, and
	// other FUSE mounts on the machine share the buffer.
	if err := t.write("buffer_size_kb", "65536"); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *reqTracer) write(name, val string) error {
	p := filepath.Join(t.dir, name)
	if err := os.WriteFile(p, []byte(val), 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// Start clears the buffer and starts recording.
func (t *reqTracer) Start() error {
	if err := os.WriteFile(filepath.Join(t.dir, "trace"), nil, 0); err != nil {
		return fmt.Errorf("clear %s/trace: %w", t.dir, err)
	}
	return t.write("events/fuse/fuse_request_send/enable", "1")
}

var (
	traceLine = regexp.MustCompile(`fuse_request_send: connection (\d+) req \d+ opcode \d+ \(FUSE_(\w+)\)`)
	markLine  = regexp.MustCompile(`tracing_mark_write: ovl-bench (mounted|released) (\d+)`)
)

// Mounted and Released mark in the trace that a mount of the bench's
// has connection conn, and that the bench unmounts it. A device number
// is reused as soon as it is free, so requests to conn count only from
// the INIT before the Mounted mark to the Released mark: what another
// FUSE mount on the machine sends with the same number, before or after,
// is left out.
func (t *reqTracer) Mounted(conn uint64)  { t.mark("mounted", conn) }
func (t *reqTracer) Released(conn uint64) { t.mark("released", conn) }

func (t *reqTracer) mark(what string, conn uint64) {
	t.write("trace_marker", fmt.Sprintf("ovl-bench %s %d", what, conn))
}

// Stop stops recording and returns the requests sent to the connections
// conns, by operation. It fails when the buffer overflowed, since the
// counts would then be short.
func (t *reqTracer) Stop(conns map[uint64]bool) (map[string]int64, error) {
	if err := t.write("events/fuse/fuse_request_send/enable", "0"); err != nil {
		return nil, err
	}
	if n := t.overruns(); n > 0 {
		return nil, fmt.Errorf("the trace buffer overflowed (%d events lost): no counts", n)
	}
	fh, err := os.Open(filepath.Join(t.dir, "trace"))
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return countRequests(fh, conns)
}

// countRequests reads a trace's text and counts the fuse_request_send
// events of the connections conns by operation, each from the INIT
// before its Mounted mark (or from the mark, for a mount older than the
// trace) to its Released mark.
func countRequests(r io.Reader, conns map[uint64]bool) (map[string]int64, error) {
	counts := map[string]int64{}
	pending := map[uint64]map[string]int64{} // since the last INIT, before the Mounted mark
	state := map[uint64]string{}             // "", "mounted" or "released"
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if m := markLine.FindStringSubmatch(line); m != nil {
			c, _ := strconv.ParseUint(m[2], 10, 64)
			if m[1] == "mounted" && state[c] == "" {
				for op, n := range pending[c] {
					counts[op] += n
				}
				delete(pending, c)
			}
			state[c] = m[1]
			continue
		}
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		c, _ := strconv.ParseUint(m[1], 10, 64)
		switch {
		case !conns[c] || state[c] == "released":
		case state[c] == "mounted":
			counts[m[2]]++
		case m[2] == "INIT":
			pending[c] = map[string]int64{"INIT": 1}
		case pending[c] != nil:
			pending[c][m[2]]++
		}
	}
	return counts, sc.Err()
}

// overruns sums the events lost on every CPU since the last clear.
func (t *reqTracer) overruns() int64 {
	cpus, _ := filepath.Glob(filepath.Join(t.dir, "per_cpu", "cpu*", "stats"))
	var n int64
	for _, p := range cpus {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "overrun: "); ok {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// Close removes the tracing instance.
func (t *reqTracer) Close() error {
	t.write("events/fuse/fuse_request_send/enable", "0")
	return os.Remove(t.dir)
}

// fuseConnection is the connection number the tracepoint shows for the
// FUSE mount at dir: the kernel's encoding of the mount's device number.
func fuseConnection(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, err
	}
	return uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev)), nil
}

// FormatRequests prints counts as "LOOKUP 15,036 · GETATTR 2 · ...
// (total N)", most frequent first.
func FormatRequests(counts map[string]int64) string {
	if len(counts) == 0 {
		return "none"
	}
	type kv struct {
		op string
		n  int64
	}
	var all []kv
	var total int64
	for op, n := range counts {
		all = append(all, kv{op, n})
		total += n
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].op < all[j].op
	})
	parts := make([]string, 0, len(all))
	for _, x := range all {
		parts = append(parts, x.op+" "+strconv.FormatInt(x.n, 10))
	}
	return fmt.Sprintf("%d: %s", total, strings.Join(parts, ", "))
}
