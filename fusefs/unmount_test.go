package fusefs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// TestUnmountWithCopyInAnotherNamespace checks that Unmount does not wait
// for a process that unshared its mount namespace while the stack was
// mounted (a container, a test re-executed in a user namespace): such a
// copy of the mount keeps the FUSE connection alive, and Unmount used to
// wait for the daemon until that process ended. Unmount must return
// while the process lives, with the daemon gone and the copy dead, so
// nothing reaches the upper afterwards.
func TestUnmountWithCopyInAnotherNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	s := newStack(t, t.TempDir(), 1)
	writeFiles(t, s.lowers[0], map[string]string{"a": "lower"})
	m := mountFuse(t, s.spec()).(*daemonMount)

	// The holder copies the mount table, reports it has, and keeps the
	// copy until it is killed (or for ten minutes).
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", "echo ready; exec sleep 600")
	out, err := holder.StdoutPipe()
	mustDo(t, err)
	mustDo(t, holder.Start())
	exited := make(chan struct{})
	go func() { holder.Wait(); close(exited) }()
	t.Cleanup(func() { holder.Process.Kill(); <-exited })
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("holder did not start: %q %v", buf, err)
	}
	inHolder := func(args ...string) ([]byte, error) {
		return exec.Command("nsenter", append([]string{"-t", fmt.Sprint(holder.Process.Pid), "-m", "--"}, args...)...).CombinedOutput()
	}
	if got, err := inHolder("cat", filepath.Join(s.target, "a")); err != nil || string(got) != "lower" {
		t.Fatalf("the holder's copy of the mount does not work before Unmount: %q %v", got, err)
	}

	unmounted := make(chan error, 1)
	go func() { unmounted <- m.Unmount() }()
	select {
	case err := <-unmounted:
		if err != nil {
			t.Fatalf("Unmount: %v", err)
		}
	case <-exited:
		t.Fatal("Unmount returned only after the process holding a copy of the mount in another namespace exited")
	}
	select {
	case <-m.exited:
	default:
		t.Error("Unmount returned before the daemon exited")
	}
	got, err := inHolder("sh", "-c", "echo late > "+filepath.Join(s.target, "late"))
	if err == nil {
		t.Errorf("writing through the other namespace's copy after Unmount worked, want ENOTCONN")
	} else if !strings.Contains(string(got), "not connected") {
		t.Errorf("writing through the other namespace's copy after Unmount: %v: %s, want ENOTCONN", err, got)
	}
	if _, err := os.Lstat(filepath.Join(s.upper, "late")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("upper/late after Unmount: %v, want it absent", err)
	}
	if got, _ := os.ReadDir(s.target); len(got) != 0 {
		t.Errorf("target still shows %d entries after Unmount", len(got))
	}
}
