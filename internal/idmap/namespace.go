package idmap

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/ovl-dev/ovl/internal/reexec"
)

// Apply maps m into the user namespace of process pid, with newuidmap
// and newgidmap (set-uid helpers that check m against /etc/subuid and
// /etc/subgid).
func (m *Map) Apply(pid int) error {
	for _, x := range []struct {
		tool string
		ext  []Extent
	}{{"newuidmap", m.UIDs}, {"newgidmap", m.GIDs}} {
		args := append([]string{strconv.Itoa(pid)}, strings.Fields(extentArgs(x.ext, " "))...)
		if out, err := exec.Command(x.tool, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", x.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// Environment of a process Start starts: the descriptor to wait on
// until the ids are mapped, then, after the second start, a marker.
const (
	envSync   = "OVL_IDMAP_SYNC"
	envMapped = "OVL_IDMAP_MAPPED"
)

// Start starts cmd, a re-exec command of this binary, in a new user
// namespace (added to cmd.SysProcAttr's clone flags) and maps m into it.
// The command's entry must call Mapped first: it waits there until the
// ids are mapped. On error the process is killed.
func Start(cmd *exec.Cmd, m *Map) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer w.Close()
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	cmd.Env = append(cmd.Env, envSync+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
	err = cmd.Start()
	r.Close()
	if err != nil {
		return err
	}
	if err := m.Apply(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	return nil // closing w tells the process its ids are mapped
}

// Mapped, first thing in re-exec entry started by Start, waits until the
// process's ids are mapped, then starts the entry again: a process gains
// root's capabilities in its namespace at exec, and it was started before
// it had a uid there. It returns in that second start only.
func Mapped(entry string) {
	if os.Getenv(envMapped) != "" {
		os.Unsetenv(envMapped)
		return
	}
	fd, err := strconv.Atoi(os.Getenv(envSync))
	if err != nil {
		fmt.Fprintf(os.Stderr, "ovl: %s: started without idmap.Start\n", entry)
		os.Exit(125)
	}
	os.Unsetenv(envSync)
	sync := os.NewFile(uintptr(fd), "idmap-sync")
	io.Copy(io.Discard, sync) // EOF: mapped
	sync.Close()
	err = reexec.Exec(entry, append(os.Environ(), envMapped+"=1"))
	fmt.Fprintf(os.Stderr, "ovl: %s: exec after mapping ids: %v\n", entry, err)
	os.Exit(125)
}
