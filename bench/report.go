package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"
)

// Report is one bench run: where, over what, and every Result.
type Report struct {
	Date        time.Time         `json:"date"`
	Took        time.Duration     `json:"took_ns"`
	Machine     Machine           `json:"machine"`
	Fixture     FixtureInfo       `json:"fixture"`
	Warmup      int               `json:"warmup"`
	Reps        int               `json:"reps"`
	Contestants []ContestantInfo  `json:"contestants"`
	Workloads   []WorkloadInfo    `json:"workloads"`
	Results     []Result          `json:"results"`
	Interrupted bool              `json:"interrupted,omitempty"`
	index       map[[2]string]int `json:"-"`
}

// FixtureInfo describes the tree the workloads ran over.
type FixtureInfo struct {
	Tree  string `json:"tree"`
	Files int    `json:"files"`
	MB    int64  `json:"mb"`
}

// ContestantInfo is a contestant as the report shows it.
type ContestantInfo struct {
	Name        string `json:"name"`
	Peer        bool   `json:"peer"`
	Unavailable string `json:"unavailable,omitempty"`
	Note        string `json:"note,omitempty"`
}

// WorkloadInfo is a workload as the report shows it.
type WorkloadInfo struct {
	Name  string `json:"name"`
	About string `json:"about"`
}

// NewReport assembles a report.
func NewReport(date time.Time, m Machine, f *Fixture, opt RunOptions, cs []*Contestant, ws []Workload, rs []Result) *Report {
	r := &Report{Date: date, Machine: m, Warmup: opt.Warmup, Reps: opt.Reps, Results: rs}
	if f != nil {
		r.Fixture = FixtureInfo{Tree: f.Config.Tree, Files: f.Files, MB: f.Bytes >> 20}
	}
	for _, c := range cs {
		ci := ContestantInfo{Name: c.Name, Peer: c.Peer, Note: c.Note}
		if c.Unavailable != nil {
			ci.Unavailable = c.Unavailable.Error()
		}
		r.Contestants = append(r.Contestants, ci)
	}
	for _, w := range ws {
		r.Workloads = append(r.Workloads, WorkloadInfo{Name: w.Name, About: w.About})
	}
	return r
}

// Find returns the result of workload w by contestant c, or nil.
func (r *Report) Find(w, c string) *Result {
	if r.index == nil {
		r.index = map[[2]string]int{}
		for i, x := range r.Results {
			r.index[[2]string{x.Workload, x.Contestant}] = i
		}
	}
	i, ok := r.index[[2]string{w, c}]
	if !ok {
		return nil
	}
	return &r.Results[i]
}

// measured reports whether contestant c has valid samples of workload w.
func (r *Report) measured(w, c string) bool {
	res := r.Find(w, c)
	return res != nil && res.Status == StatusOK
}

// RatioTo is res's median over the median of contestant base in the same
// workload; 0 when either has no valid samples.
func (r *Report) RatioTo(res *Result, base string) float64 {
	b := r.Find(res.Workload, base)
	if b == nil || b.Status != StatusOK || res.Status != StatusOK {
		return 0
	}
	return Ratio(res.Summary, b.Summary)
}

// FormatDuration prints d in milliseconds with three significant digits,
// or in seconds from 10 s up.
func FormatDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 10000:
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + " s"
	case ms >= 100:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
	}
}

// formatRatio prints a ratio with two decimals from 0.1 to 100, and with
// two significant digits below (0.0044) and none above (2733): small and
// huge ratios stay readable.
func formatRatio(x float64) string {
	switch {
	case x == 0:
		return "-"
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 0.1:
		return strconv.FormatFloat(x, 'f', 2, 64)
	default:
		return strconv.FormatFloat(x, 'g', 2, 64)
	}
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// cell is what a table shows for a result that has no numbers.
func (res *Result) cell(width int) string {
	if res.Err == "" {
		return string(res.Status)
	}
	return string(res.Status) + ": " + shorten(res.Err, width)
}

// WriteTable writes the terminal table: one line per workload and
// contestant, with the median, the spread (range over median), the count
// and the ratios to kernel overlay and to fuse-overlayfs.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "ovl-bench %s on %s\n", r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Machine)
	fmt.Fprintf(w, "tree %s: %d files, %d MB; %d warm-up + up to %d repetitions, contestants interleaved\n",
		r.Fixture.Tree, r.Fixture.Files, r.Fixture.MB, r.Warmup, r.Reps)
	for _, c := range r.Contestants {
		switch {
		case c.Unavailable != "":
			fmt.Fprintf(w, "  %s: unavailable: %s\n", c.Name, c.Unavailable)
		case c.Note != "":
			fmt.Fprintf(w, "  %s: %s\n", c.Name, c.Note)
		}
	}
	fmt.Fprintln(w)
	// Names left-aligned, numbers right-aligned: the names are padded
	// here, so tabwriter's right alignment leaves them alone.
	wW, cW := len("workload"), len("contestant")
	for _, res := range r.Results {
		wW, cW = max(wW, utf8.RuneCountInString(res.Workload)), max(cW, utf8.RuneCountInString(res.Contestant))
	}
	names := func(wl, c string) string {
		return wl + strings.Repeat(" ", wW-utf8.RuneCountInString(wl)) + "  " + c + strings.Repeat(" ", cW-utf8.RuneCountInString(c))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tmedian\tspread\tn\t×kernel\t×fuse-overlayfs\t×cp -a\t\n", names("workload", "contestant"))
	last := ""
	for i := range r.Results {
		res := &r.Results[i]
		if res.Status == StatusNA {
			continue
		}
		wl := res.Workload
		if wl == last {
			wl = ""
		}
		last = res.Workload
		if res.Status != StatusOK {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t  %s\n", names(wl, res.Contestant), res.cell(90))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t±%.0f%%\t%d\t%s\t%s\t%s\t\n", names(wl, res.Contestant),
			FormatDuration(res.Summary.Median), 100*res.Summary.Spread()/2, res.Summary.N,
			formatRatio(r.RatioTo(res, PeerKernel)), formatRatio(r.RatioTo(res, PeerFuseOverlayfs)),
			formatRatio(r.RatioTo(res, PeerCopy)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s := r.SlowerThanPeers(); len(s) > 0 {
		fmt.Fprintln(w, "\nwhere ovl is slower than a peer:")
		for _, l := range s {
			fmt.Fprintln(w, "  "+l)
		}
	}
	if s := r.RequestLines(); len(s) > 0 {
		fmt.Fprintln(w, "\nFUSE requests of one more repetition (total: by operation):")
		for _, l := range s {
			fmt.Fprintln(w, "  "+l)
		}
	}
	return nil
}

// writeRequestsMarkdown writes the --requests counts as a table: a row
// per workload, a column per FUSE contestant that has counts.
func (r *Report) writeRequestsMarkdown(w io.Writer) {
	var cols []string
	for _, c := range r.Contestants {
		for i := range r.Results {
			if res := &r.Results[i]; res.Contestant == c.Name && (res.Requests != nil || res.RequestsErr != "") {
				cols = append(cols, c.Name)
				break
			}
		}
	}
	if len(cols) == 0 {
		return
	}
	fmt.Fprintln(w, "\nFUSE requests of one more repetition, counted with the kernel's fuse_request_send tracepoint (total: by operation):")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| workload | %s |\n|---|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	for _, wl := range r.Workloads {
		var cells []string
		any := false
		for _, c := range cols {
			res := r.Find(wl.Name, c)
			switch {
			case res == nil || (res.Requests == nil && res.RequestsErr == ""):
				cells = append(cells, "—")
			case res.Requests != nil:
				cells = append(cells, FormatRequests(res.Requests))
				any = true
			default:
				cells = append(cells, "not counted: "+shorten(res.RequestsErr, 80))
				any = true
			}
		}
		if any {
			fmt.Fprintf(w, "| %s | %s |\n", wl.Name, strings.Join(cells, " | "))
		}
	}
}

// RequestLines lists, per workload and FUSE contestant, the requests
// counted with --requests, or why they are missing.
func (r *Report) RequestLines() []string {
	var out []string
	for i := range r.Results {
		res := &r.Results[i]
		switch {
		case res.Requests != nil:
			out = append(out, fmt.Sprintf("%s, %s: %s", res.Workload, res.Contestant, FormatRequests(res.Requests)))
		case res.RequestsErr != "":
			out = append(out, fmt.Sprintf("%s, %s: not counted: %s", res.Workload, res.Contestant, res.RequestsErr))
		}
	}
	return out
}

// WriteJSON writes the whole report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// CSVHeader is the first line of WriteCSV's output.
var CSVHeader = []string{"workload", "contestant", "status", "n", "median_ms", "min_ms", "max_ms",
	"spread_pct", "x_kernel_overlay", "x_fuse_overlayfs", "x_cp_a", "error"}

// WriteCSV writes one row per workload and contestant, n/a pairs included.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
	}
	for i := range r.Results {
		res := &r.Results[i]
		row := []string{res.Workload, res.Contestant, string(res.Status), "", "", "", "", "", "", "", "", res.Err}
		if res.Status == StatusOK {
			s := res.Summary
			row[3], row[4], row[5], row[6] = strconv.Itoa(s.N), ms(s.Median), ms(s.Min), ms(s.Max)
			row[7] = strconv.FormatFloat(100*s.Spread(), 'f', 1, 64)
			if x := r.RatioTo(res, PeerKernel); x > 0 {
				row[8] = strconv.FormatFloat(x, 'f', 3, 64)
			}
			if x := r.RatioTo(res, PeerFuseOverlayfs); x > 0 {
				row[9] = strconv.FormatFloat(x, 'f', 3, 64)
			}
			if x := r.RatioTo(res, PeerCopy); x > 0 {
				row[10] = strconv.FormatFloat(x, 'f', 3, 64)
			}
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// WriteMarkdown writes the README table: a row per workload, a column per
// contestant, each cell the median and the ratio to kernel overlay.
func (r *Report) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "Measured %s on %s. Tree: %s, %d files, %d MB. Median of up to %d repetitions after %d warm-up; (×N) is the ratio to kernel overlay in the same run, or to cp -a where kernel overlay has no equivalent.\n\n",
		r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Machine, r.Fixture.Tree, r.Fixture.Files, r.Fixture.MB, r.Reps, r.Warmup)
	fmt.Fprint(w, "| workload |")
	for _, c := range r.Contestants {
		fmt.Fprintf(w, " %s |", c.Name)
	}
	fmt.Fprint(w, "\n|---|")
	for range r.Contestants {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, wl := range r.Workloads {
		fmt.Fprintf(w, "| %s |", wl.Name)
		for _, c := range r.Contestants {
			res := r.Find(wl.Name, c.Name)
			switch {
			case res == nil || res.Status == StatusNA:
				fmt.Fprint(w, " — |")
			case res.Status != StatusOK:
				fmt.Fprintf(w, " %s |", res.Status)
			default:
				cell := FormatDuration(res.Summary.Median)
				if x := r.RatioTo(res, PeerKernel); x > 0 && c.Name != PeerKernel {
					cell += " (×" + formatRatio(x) + ")"
				} else if x := r.RatioTo(res, PeerCopy); x > 0 && c.Name != PeerCopy && !r.measured(wl.Name, PeerKernel) {
					cell += " (×" + formatRatio(x) + " of cp -a)"
				}
				fmt.Fprintf(w, " %s |", cell)
			}
		}
		fmt.Fprintln(w)
	}
	if s := r.SlowerThanPeers(); len(s) > 0 {
		fmt.Fprintln(w, "\nWhere ovl is slower than a peer in this run:")
		fmt.Fprintln(w)
		for _, l := range s {
			fmt.Fprintln(w, "- "+l)
		}
	}
	r.writeRequestsMarkdown(w)
	var notes []string
	for _, c := range r.Contestants {
		if c.Unavailable != "" {
			notes = append(notes, fmt.Sprintf("- %s: unavailable: %s", c.Name, shorten(c.Unavailable, 200)))
		}
	}
	down := map[string]bool{}
	for _, c := range r.Contestants {
		down[c.Name] = c.Unavailable != ""
	}
	for i := range r.Results {
		res := &r.Results[i]
		if (res.Status == StatusUnavailable || res.Status == StatusFailed) && !down[res.Contestant] {
			notes = append(notes, fmt.Sprintf("- %s, %s: %s", res.Workload, res.Contestant, res.cell(200)))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nNot measured:")
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	return nil
}

// SlowerThanPeers lists, in words, every workload where an ovl backend is
// slower than a peer beyond the noise: its fastest repetition is slower
// than the peer's slowest, and its median at least 10% above the peer's.
func (r *Report) SlowerThanPeers() []string {
	var out []string
	for _, wl := range r.Workloads {
		for _, c := range r.Contestants {
			if c.Peer {
				continue
			}
			res := r.Find(wl.Name, c.Name)
			if res == nil || res.Status != StatusOK {
				continue
			}
			for _, p := range r.Contestants {
				if !p.Peer {
					continue
				}
				pr := r.Find(wl.Name, p.Name)
				if pr == nil || pr.Status != StatusOK {
					continue
				}
				// Slower beyond noise: ovl's fastest repetition is slower
				// than the peer's slowest, and by 10% at least.
				if res.Summary.Min > pr.Summary.Max && Ratio(res.Summary, pr.Summary) >= 1.1 {
					out = append(out, fmt.Sprintf("%s: %s %s vs %s %s (×%s)", wl.Name, c.Name,
						FormatDuration(res.Summary.Median), p.Name, FormatDuration(pr.Summary.Median),
						formatRatio(Ratio(res.Summary, pr.Summary))))
				}
			}
		}
	}
	return out
}
