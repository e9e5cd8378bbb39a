package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// palette colours contestants in report order: ovl's in blues and greens,
// peers in warm colours, so the two families read apart.
var palette = []string{"#1f77b4", "#2ca02c", "#17becf", "#9467bd", "#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"}

// SVG layout, in pixels.
const (
	svgWidth   = 980
	svgLabelW  = 200
	svgBarW    = 560
	svgBarH    = 14
	svgRowH    = 19
	svgGroupH  = 26
	svgMarginX = 10
)

// WriteSVG draws the report as horizontal bar charts, one group per
// workload: a bar per contestant, its length the median relative to the
// slowest contestant of that workload, a whisker from the fastest to the
// slowest repetition, and the median and ratio to kernel overlay as text.
// Contestants that did not run say why.
func (r *Report) WriteSVG(w io.Writer) error {
	type row struct {
		res   *Result
		color string
	}
	type group struct {
		name string
		max  float64
		rows []row
	}
	color := map[string]string{}
	for i, c := range r.Contestants {
		color[c.Name] = palette[i%len(palette)]
	}
	var groups []group
	height := 70
	for _, wl := range r.Workloads {
		g := group{name: wl.Name}
		for _, c := range r.Contestants {
			res := r.Find(wl.Name, c.Name)
			if res == nil || res.Status == StatusNA {
				continue
			}
			g.rows = append(g.rows, row{res, color[c.Name]})
			if res.Status == StatusOK {
				g.max = max(g.max, float64(res.Summary.Max))
			}
		}
		if len(g.rows) == 0 {
			continue
		}
		groups = append(groups, g)
		height += svgGroupH + len(g.rows)*svgRowH
	}

	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`+"\n", svgMarginX,
		esc(fmt.Sprintf("ovl-bench, %s", r.Date.UTC().Format("2006-01-02 15:04 MST"))))
	p(`<text x="%d" y="40" fill="#444">%s</text>`+"\n", svgMarginX,
		esc(fmt.Sprintf("%s; tree %d files, %d MB", r.Machine, r.Fixture.Files, r.Fixture.MB)))
	p(`<text x="%d" y="56" fill="#444">%s</text>`+"\n", svgMarginX,
		esc("bar: median, scaled to the slowest of its workload; whisker: fastest to slowest repetition; ×: ratio to kernel overlay (or to cp -a)"))
	y := 70
	x0 := svgMarginX + svgLabelW
	for _, g := range groups {
		y += svgGroupH
		p(`<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", svgMarginX, y-8, esc(g.name))
		p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ccc"/>`+"\n", x0, y-4, x0, y+len(g.rows)*svgRowH)
		for _, rw := range g.rows {
			res := rw.res
			mid := y + svgBarH/2
			p(`<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", x0-6, mid+4, esc(res.Contestant))
			if res.Status != StatusOK || g.max <= 0 {
				p(`<text x="%d" y="%d" fill="#888" font-style="italic">%s</text>`+"\n", x0+4, mid+4, esc(res.cell(80)))
				y += svgRowH
				continue
			}
			scale := func(v float64) float64 { return float64(svgBarW) * v / g.max }
			s := res.Summary
			p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y, scale(float64(s.Median)), svgBarH, rw.color)
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222"/>`+"\n", float64(x0)+scale(float64(s.Min)), mid,
				float64(x0)+scale(float64(s.Max)), mid)
			label := FormatDuration(s.Median)
			if x := r.RatioTo(res, PeerKernel); x > 0 && res.Contestant != PeerKernel {
				label += "  ×" + formatRatio(x)
			} else if x := r.RatioTo(res, PeerCopy); x > 0 && res.Contestant != PeerCopy && !r.measured(res.Workload, PeerKernel) {
				label += "  ×" + formatRatio(x) + " of cp -a"
			}
			p(`<text x="%.1f" y="%d">%s</text>`+"\n", float64(x0)+scale(float64(s.Max))+6, mid+4, esc(label))
			y += svgRowH
		}
	}
	p("</svg>\n")
	return bw.Flush()
}

// esc escapes s for XML text and attributes.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
