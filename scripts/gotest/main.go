// Command gotest runs `go test -json` with its arguments and prints
// progress while the tests run, which plain `go test` of several packages
// does not (it prints a package's output when the package ends): each
// test and first-level subtest as it ends, with its time; each package as
// it ends; every 30 seconds the tests still running; the whole output of
// every failed test; and a summary. It exits with go test's status.
//
// `make test` and `make stress` run it: go run ./scripts/gotest [go test
// flags] PACKAGES.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// heartbeat is how often the tests still running are named.
const heartbeat = 30 * time.Second

func main() {
	cmd := exec.Command("go", append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	p := newProgress(os.Stdout, start)
	stop := make(chan struct{})
	go p.beat(stop)
	p.read(stdout)
	close(stop)
	werr := cmd.Wait()
	failed := p.summary()
	var exit *exec.ExitError
	switch {
	case errors.As(werr, &exit):
		os.Exit(exit.ExitCode())
	case werr != nil:
		fatal(werr)
	case failed:
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gotest:", err)
	os.Exit(2)
}

// progress follows the events of one go test run.
type progress struct {
	w     io.Writer
	start time.Time

	mu       sync.Mutex
	running  map[string]time.Time // "pkg Test/sub" -> when it started
	output   map[string][]string  // "pkg Test" -> its output, until it passes
	failed   []string
	packages int
}

func newProgress(w io.Writer, start time.Time) *progress {
	return &progress{w: w, start: start, running: map[string]time.Time{}, output: map[string][]string{}}
}

// read handles events until r ends; a line that is not an event (a build
// error) is printed as it is.
func (p *progress) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(p.w, sc.Text())
			continue
		}
		p.handle(e)
	}
}

// short is a package path without the module's prefix.
func short(pkg string) string {
	if i := strings.Index(pkg, "/ovl/"); i >= 0 {
		return pkg[i+len("/ovl/"):]
	}
	return pkg
}

func (p *progress) handle(e event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := short(e.Package) + " " + e.Test
	top := e.Test
	if i := strings.Index(top, "/"); i >= 0 {
		top = top[:i]
	}
	topKey := short(e.Package) + " " + top
	depth := strings.Count(e.Test, "/")
	switch e.Action {
	case "run":
		p.running[key] = e.Time
	case "output":
		// A test's output, or the package's own (a panic, a timeout).
		p.output[topKey] = append(p.output[topKey], e.Output)
	case "build-output":
		fmt.Fprint(p.w, e.Output)
	case "build-fail":
		p.failed = append(p.failed, "build of "+short(e.Package))
	case "pass", "fail", "skip":
		if e.Test == "" { // the package
			switch e.Action {
			case "pass":
				p.packages++
				fmt.Fprintf(p.w, "ok   %-24s %6.1fs   [%s]\n", short(e.Package), e.Elapsed, p.clock())
			case "fail":
				p.failed = append(p.failed, short(e.Package))
				fmt.Fprintf(p.w, "FAIL %-24s %6.1fs   [%s]\n%s", short(e.Package), e.Elapsed, p.clock(), strings.Join(p.output[topKey], ""))
			}
			delete(p.output, topKey)
			return
		}
		delete(p.running, key)
		if e.Action == "fail" && depth == 0 {
			p.failed = append(p.failed, key)
			fmt.Fprintf(p.w, "--- FAIL %s (%.1fs)\n%s", key, e.Elapsed, strings.Join(p.output[topKey], ""))
		}
		if depth == 0 {
			delete(p.output, topKey)
		}
		if e.Action == "pass" && depth <= 1 && e.Elapsed >= 1 {
			fmt.Fprintf(p.w, "     %-60s %6.1fs\n", key, e.Elapsed)
		}
	}
}

// clock is the time since the run started.
func (p *progress) clock() string { return time.Since(p.start).Round(time.Second).String() }

// beat names the longest-running tests every heartbeat until stop.
func (p *progress) beat(stop <-chan struct{}) {
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			var names []string
			for k := range p.running {
				names = append(names, k)
			}
			sort.Slice(names, func(i, j int) bool { return p.running[names[i]].Before(p.running[names[j]]) })
			var parts []string
			for _, n := range names {
				if strings.Count(n, "/") <= 1 && len(parts) < 4 {
					parts = append(parts, fmt.Sprintf("%s (%s)", n, now.Sub(p.running[n]).Round(time.Second)))
				}
			}
			if len(parts) > 0 {
				fmt.Fprintf(p.w, "  .. [%s] running: %s\n", p.clock(), strings.Join(parts, ", "))
			}
			p.mu.Unlock()
		}
	}
}

// summary prints the end of the run and reports whether anything failed.
func (p *progress) summary() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failed) > 0 {
		fmt.Fprintf(p.w, "FAILED after %s: %s\n", p.clock(), strings.Join(p.failed, ", "))
		return true
	}
	fmt.Fprintf(p.w, "all %d packages passed in %s\n", p.packages, p.clock())
	return false
}
