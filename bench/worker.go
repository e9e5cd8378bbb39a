package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ovl-dev/ovl/internal/reexec"
)

// workerEntry is the re-exec entry that runs a Go-written workload in a
// child process, away from any FUSE server of the bench's own process.
const workerEntry = "ovl-bench-worker"

func init() { reexec.Register(workerEntry, workerMain) }

// workerOps are the workloads written in Go. Each gets its arguments and
// does its work; the child prints the time it took.
var workerOps = map[string]func(args []string) error{
	"readall": opReadAll,
	"append":  opAppend,
	"storm":   opStorm,
	"stat":    opStat,
}

func workerMain() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "ovl-bench worker: no operation")
		os.Exit(2)
	}
	op, ok := workerOps[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "ovl-bench worker: unknown operation %q\n", os.Args[1])
		os.Exit(2)
	}
	t0 := time.Now()
	if err := op(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "ovl-bench worker %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Println(time.Since(t0).Nanoseconds())
}

// runWorker runs op in a child process and returns the time the child
// measured around the work itself (not its start-up).
func runWorker(ctx context.Context, op string, args ...string) (time.Duration, error) {
	cmd := reexec.Command(workerEntry, append([]string{op}, args...)...)
	cmd = withContext(ctx, cmd)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("worker %s: %w: %s", op, err, strings.TrimSpace(stderr.String()))
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("worker %s: bad output %q", op, out)
	}
	return time.Duration(ns), nil
}

// withContext rebuilds cmd so it is killed when ctx ends.
func withContext(ctx context.Context, cmd *exec.Cmd) *exec.Cmd {
	c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	c.Env, c.Dir = cmd.Env, cmd.Dir
	return c
}

// opReadAll reads every regular file under args[0].
func opReadAll(args []string) error {
	buf := make([]byte, 256<<10)
	return filepath.WalkDir(args[0], func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		f.Close()
		return err
	})
}

// opAppend appends a line to each file named in list args[1], relative to
// args[0]: a copy-up of each.
func opAppend(args []string) error {
	names, err := ReadList(args[1])
	if err != nil {
		return err
	}
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(args[0], n), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString("// ovl-bench\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// opStorm creates args[1] small files in a new directory args[0], stats
// each, unlinks each and removes the directory.
func opStorm(args []string) error {
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	dir := args[0]
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	data := []byte("a small file of the create/stat/unlink storm\n")
	name := func(i int) string { return filepath.Join(dir, "f"+strconv.Itoa(i)) }
	for i := 0; i < n; i++ {
		if err := os.WriteFile(name(i), data, 0o644); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		if _, err := os.Lstat(name(i)); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		if err := os.Remove(name(i)); err != nil {
			return err
		}
	}
	return os.Remove(dir)
}

// opStat stats every name in list args[1] under args[0]. Names starting
// "missing" must not exist; every other one must.
func opStat(args []string) error {
	names, err := ReadList(args[1])
	if err != nil {
		return err
	}
	for _, n := range names {
		_, err := os.Lstat(filepath.Join(args[0], n))
		missing := strings.HasPrefix(filepath.Base(n), "missing")
		switch {
		case missing && err == nil:
			return fmt.Errorf("%s: exists, but no layer has it", n)
		case missing && errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		}
	}
	return nil
}
