package runner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/layer"
)

// rmEntry removes a directory tree as root of a user namespace with the
// caller's subordinate ids mapped: what an ordinary user needs to remove
// files that a run created as another uid (a copy backend's transient
// copy left by a killed run).
const (
	rmEntry     = "ovl-runner-rm"
	envRmMapped = "OVL_RUNNER_RM_MAPPED"
)

func init() { reexec.Register(rmEntry, rmMain) }

// errNoIDMap reports that the caller has no subordinate ids to map, so
// the files cannot belong to them: removing as mapped root cannot help.
var errNoIDMap = errors.New("no subordinate id range to map")

// removeAsMappedRoot removes p in a user namespace where the caller is
// root and its /etc/subuid and /etc/subgid ranges are mapped.
func removeAsMappedRoot(p string) error {
	idmap := hostIDMap()
	if idmap == nil {
		return errNoIDMap
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer syncR.Close()
	defer syncW.Close()
	var stderr bytes.Buffer
	cmd := reexec.Command(rmEntry, p)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	cmd.ExtraFiles = []*os.File{syncR}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	syncR.Close()
	if err := idmap.apply(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	syncW.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("remove %s in a user namespace: %w: %s", p, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// rmMain waits until its ids are mapped, execs itself again to become
// root with capabilities in the namespace, and removes os.Args[1].
func rmMain() {
	if os.Getenv(envRmMapped) == "" {
		io.Copy(io.Discard, os.NewFile(3, "sync")) // EOF: mapped
		env := append(os.Environ(), envReexec+"="+rmEntry, envRmMapped+"=1")
		err := syscall.Exec(reexec.Self(), os.Args, env)
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(1)
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: rm DIR")
		os.Exit(2)
	}
	if err := layer.RemoveAll(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
