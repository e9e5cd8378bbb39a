// Package reexec runs parts of ovl in a fresh process of the same binary:
// the FUSE daemon, and the code that must run inside new namespaces
// before the user's command. A program calls Init first thing in main
// (tests: in TestMain); Init runs the registered entry point named by the
// environment and exits, or returns false for a normal start.
package reexec

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

const envKey = "OVL_REEXEC"

var (
	mu      sync.Mutex
	entries = map[string]func(){}
)

// Register names an entry point. It panics on a duplicate name.
func Register(name string, fn func()) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := entries[name]; dup {
		panic("reexec: duplicate entry " + name)
	}
	entries[name] = fn
}

// Init runs the entry point this process was started for, if any, and
// exits with status 0 when it returns. It returns false in a normal start.
func Init() bool {
	name := os.Getenv(envKey)
	if name == "" {
		return false
	}
	os.Unsetenv(envKey)
	mu.Lock()
	fn, ok := entries[name]
	mu.Unlock()
	if !ok {
		fmt.Fprintf(os.Stderr, "ovl: unknown re-exec entry %q\n", name)
		os.Exit(2)
	}
	fn()
	os.Exit(0)
	return true
}

// Command returns a command that runs entry name in a new process of this
// binary with args as os.Args[1:].
func Command(name string, args ...string) *exec.Cmd { return CommandOf(Self(), name, args...) }

// CommandOf is Command for another binary, bin, that registers entry
// name too and calls Init first thing (ovl's slim FUSE daemon, ovl-fuse).
func CommandOf(bin, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), envKey+"="+name)
	return cmd
}

// Self is the path of this binary, stable even if the file is replaced.
func Self() string { return "/proc/self/exe" }

// Exec replaces this process with a new start of entry name of this
// binary, with the same arguments and env: for an entry that must begin
// again, e.g. to become root with capabilities in a user namespace that
// was mapped after it started. It returns only on failure.
func Exec(name string, env []string) error {
	return syscall.Exec(Self(), os.Args, append(env, envKey+"="+name))
}

// limitedBufferSize is how much of a child's output LimitedBuffer keeps.
const limitedBufferSize = 8 << 10

// LimitedBuffer keeps the first 8 KiB written to it and drops the rest
// without failing the writer: a child's stderr, kept to be quoted in an
// error, which a chatty child can neither grow without bound nor block.
// The zero value is ready to use.
type LimitedBuffer struct{ b []byte }

func (l *LimitedBuffer) Write(p []byte) (int, error) {
	if room := limitedBufferSize - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// String returns what was kept.
func (l *LimitedBuffer) String() string { return string(l.b) }
