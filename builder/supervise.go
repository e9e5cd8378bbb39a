package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/vagga"
)

// supervise runs the children of !Supervise cmd that p's --only and
// --exclude keep, all at once, each in a container run of its own, as
// vagga does (supervision.rst). stop-on-failure: when one exits, the
// others get SIGTERM, and SIGKILL kill-unresponsive-after seconds later;
// the status is the first one's. wait-all-successful: children that
// exit 0 leave the others running; the status is 0, or the first
// failure's (which stops the others as above).
func (b *Builder) supervise(ctx context.Context, cmd *vagga.Command, p parsedArgs, env []string, o CommandOptions) (int, error) {
	names := selectChildren(cmd, p.only, p.exclude)
	if len(names) == 0 {
		return 1, fmt.Errorf("command %q: --only and --exclude leave no process to run", cmd.Name)
	}
	type child struct {
		name   string
		rc     runner.Config
		signal chan os.Signal
		commit func() error
	}
	// The children write at the same time: one at a time into o's.
	stdout, stderr := &lockedWriter{w: o.Stdout}, &lockedWriter{w: o.Stderr}
	var children []*child
	for _, n := range names {
		ch := cmd.Children[n]
		rc, commit, err := b.commandConfig(ctx, ch, nil, o.Cwd, env)
		if err != nil {
			return 1, fmt.Errorf("command %q, process %q: %w", cmd.Name, n, err)
		}
		if rc.Decision, err = b.runDecision(ctx, o, cmd.Name+"."+n, ch.Container, rc.Layers); err != nil {
			return 1, err
		}
		rc.IsolateNetwork = rc.IsolateNetwork || cmd.IsolateNetwork || o.IsolateNetwork
		rc.Stdin, rc.Stdout, rc.Stderr = nil, stdout, stderr
		rc.Name = cmd.Name + "." + n
		sig := make(chan os.Signal, 2)
		rc.Signals = sig
		children = append(children, &child{name: n, rc: rc, signal: sig, commit: commit})
	}
	type exit struct {
		c    *child
		code int
		err  error
	}
	exits := make(chan exit, len(children))
	runCtx, kill := context.WithCancel(ctx)
	defer kill()
	stopBanner := b.banner(cmd, o.Stdout)
	defer stopBanner()
	for _, c := range children {
		go func(c *child) {
			res, err := runner.Run(runCtx, c.rc)
			code := res.ExitCode
			if err != nil {
				code, err = runFailure(res, err)
			}
			exits <- exit{c, code, err}
		}(c)
	}
	stopping := false
	var status int
	stop := func() {
		if stopping {
			return
		}
		stopping = true
		for _, c := range children {
			c.signal <- syscall.SIGTERM
		}
		time.AfterFunc(time.Duration(cmd.KillUnresponsiveAfter)*time.Second, kill)
	}
	for range children {
		e := <-exits
		if e.err != nil && o.Stderr != nil {
			fmt.Fprintf(o.Stderr, "ovl: %s: process %q: %v\n", cmd.Name, e.c.name, e.err)
		}
		if stopping {
			continue
		}
		if cmd.Mode == vagga.WaitAllSuccessful && e.code == 0 && e.err == nil {
			if e.c.commit != nil {
				if err := e.c.commit(); err != nil {
					return 1, err
				}
			}
			continue
		}
		status = e.code
		if e.code == 0 && e.c.commit != nil {
			if err := e.c.commit(); err != nil {
				return 1, err
			}
		}
		stop()
	}
	if status == 0 && cmd.Epilog != "" && o.Stdout != nil {
		fmt.Fprint(o.Stdout, cmd.Epilog)
	}
	return status, nil
}

// lockedWriter serializes writes to w; a nil w discards them.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	if l.w == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
