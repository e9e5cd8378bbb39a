package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// sampleReport has two workloads: ovl fuse beats fuse-overlayfs at find
// but loses at grep beyond the noise; ovl copy is unavailable; cp -a is
// n/a for grep.
func sampleReport() *Report {
	ok := func(w, c string, v ...float64) Result {
		s := ms(v...)
		return Result{Workload: w, Contestant: c, Status: StatusOK, Samples: s, Summary: Summarize(s)}
	}
	cs := []*Contestant{
		{Name: "ovl fuse"},
		{Name: "ovl copy", Unavailable: errors.New("copy: not implemented yet")},
		{Name: PeerKernel, Peer: true},
		{Name: PeerFuseOverlayfs, Peer: true},
		{Name: PeerCopy, Peer: true, SnapshotOnly: true},
	}
	ws := []Workload{{Name: "find", About: "find it"}, {Name: "grep <-r>", About: "grep & co"}, {Name: "run", About: "a container"}, {Name: "big", About: "ratios far from 1"}}
	rs := []Result{
		ok("find", "ovl fuse", 200, 210, 220),
		{Workload: "find", Contestant: "ovl copy", Status: StatusUnavailable, Err: "copy: not implemented yet"},
		ok("find", PeerKernel, 100, 100, 100),
		ok("find", PeerFuseOverlayfs, 400, 400, 500),
		ok("find", PeerCopy, 1000, 1100, 1200),
		ok("grep <-r>", "ovl fuse", 900, 950, 1000),
		{Workload: "grep <-r>", Contestant: "ovl copy", Status: StatusUnavailable, Err: "copy: not implemented yet"},
		ok("grep <-r>", PeerKernel, 300, 300, 300),
		ok("grep <-r>", PeerFuseOverlayfs, 500, 500, 600),
		{Workload: "grep <-r>", Contestant: PeerCopy, Status: StatusNA},
		ok("run", "ovl fuse", 10, 10, 10),
		{Workload: "run", Contestant: "ovl copy", Status: StatusFailed, Err: "repetition 2: exit status 1"},
		{Workload: "run", Contestant: PeerKernel, Status: StatusNA},
		{Workload: "run", Contestant: PeerFuseOverlayfs, Status: StatusNA},
		ok("run", PeerCopy, 1000, 1000, 1000),
		ok("big", "ovl fuse", 5, 5, 5),
		ok("big", PeerKernel, 1200, 1200, 1200),
	}
	date := time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC)
	m := Machine{Kernel: "6.18.0", Cores: 2, MemoryMB: 24 << 10, FS: "ext4"}
	f := &Fixture{Config: FixtureConfig{Tree: "/usr/local/go"}, Files: 15000, Bytes: 270 << 20}
	return NewReport(date, m, f, RunOptions{Warmup: 1, Reps: 3}, cs, ws, rs)
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Linux 6.18.0, 2 cores",
		"ovl copy: unavailable: copy: not implemented yet",
		"210 ms", // ovl fuse's find median
		"2.10",   // ... ×kernel
		"0.53",   // ... ×fuse-overlayfs (210/400)
		"where ovl is slower than a peer:",
		"grep <-r>: ovl fuse 950 ms vs kernel overlay 300 ms (×3.17)",
		"grep <-r>: ovl fuse 950 ms vs fuse-overlayfs 500 ms (×1.90)",
		"failed: repetition 2: exit status 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "find: ovl fuse 210 ms vs fuse-overlayfs") {
		t.Errorf("table says ovl fuse is slower at find than fuse-overlayfs, which it beats:\n%s", out)
	}
	// cp -a is n/a for grep: no row.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "grep") && strings.Contains(l, PeerCopy) && !strings.Contains(l, "vs") {
			t.Errorf("n/a pair printed: %q", l)
		}
	}
}

func TestWriteCSV(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	if len(rows) != 18 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("got %d rows, header %v", len(rows), rows[0])
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	fuseFind := rows[1]
	for k, want := range map[string]string{"contestant": "ovl fuse", "status": "ok", "n": "3", "median_ms": "210.000",
		"min_ms": "200.000", "max_ms": "220.000", "spread_pct": "9.5", "x_kernel_overlay": "2.100", "x_fuse_overlayfs": "0.525"} {
		if got := fuseFind[col[k]]; got != want {
			t.Errorf("find/ovl fuse %s = %q, want %q", k, got, want)
		}
	}
	if r := rows[2]; r[col["status"]] != "unavailable" || r[col["error"]] != "copy: not implemented yet" {
		t.Errorf("unavailable row: %v", r)
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not parse: %v", err)
	}
	r := back.Find("find", "ovl fuse")
	if r == nil || r.Summary.Median != 210*time.Millisecond || len(r.Samples) != 3 {
		t.Fatalf("find/ovl fuse after a round trip: %+v", r)
	}
	if back.Contestants[1].Unavailable == "" || back.Machine.Kernel != "6.18.0" {
		t.Errorf("contestants or machine lost: %+v %+v", back.Contestants, back.Machine)
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| workload | ovl fuse | ovl copy | kernel overlay | fuse-overlayfs | cp -a |",
		"| find | 210 ms (×2.10) | unavailable | 100 ms | 400 ms (×4.00) | 1100 ms (×11.00) |",
		"| run | 10.0 ms (×0.01 of cp -a) |",
		"| grep <-r> | 950 ms (×3.17) | unavailable | 300 ms | 500 ms (×1.67) | — |",
		"Where ovl is slower than a peer",
		"- ovl copy: unavailable: copy: not implemented yet",
		"| run | 10.0 ms (×0.01 of cp -a) | failed | — | — | 1000 ms |",
		"| big | 5.00 ms (×0.0042) | — | 1200 ms | — | — |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteSVG(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, names escaped, one bar per measured pair.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var texts []string
	rects := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b.String())
		}
		switch v := tok.(type) {
		case xml.StartElement:
			if v.Name.Local == "rect" {
				rects++
			}
		case xml.CharData:
			texts = append(texts, string(v))
		}
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"grep <-r>", "ovl fuse", "fuse-overlayfs", "unavailable: copy: not implemented yet", "210 ms  ×2.10"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG text lacks %q", want)
		}
	}
	// 1 background + 4 bars for find (fuse, kernel, fuse-overlayfs, cp -a)
	// + 3 for grep + 2 for run + 2 for big.
	if rects != 12 {
		t.Errorf("%d rects, want 12 (background and 11 bars)", rects)
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{420 * time.Microsecond, "0.42 ms"},
		{12340 * time.Microsecond, "12.3 ms"},
		{1234 * time.Millisecond, "1234 ms"},
		{12345 * time.Millisecond, "12.3 s"},
	} {
		if got := FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
