package fusefs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestDbgTmp(t *testing.T) {
	if os.Getenv("DBG") == "" {
		t.Skip()
	}
	dir := t.TempDir()
	s := newStack(t, dir, 0)
	s.lowers = []string{filepath.Join(dir, "lower")}
	exec.Command("cp", "-a", "/usr/local/go/src/net", s.lowers[0]).Run()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	go Serve(ctx, s.spec(), Options{Debug: os.Getenv("DBG") == "2", NoOpen: os.Getenv("NOOPEN") == "1", Ready: func() { close(ready) }})
	<-ready
	for i := 0; i < 12; i++ {
		if i == 2 {
			os.Stderr.WriteString("=====RUN3\n")
		}
		start := time.Now()
		c := exec.Command("sh", "-c", os.Getenv("CMD"))
		c.Dir = s.target
		c.Run()
		t.Log(time.Since(start))
	}
	cancel()
	time.Sleep(200 * time.Millisecond)
}
