package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envExec carries the exec stage's plan.
const envExec = "OVL_RUNNER_EXEC"

// execPlan is what the exec stage needs.
type execPlan struct {
	Root    string
	Workdir string
	Env     []string
	Args    []string
	User    *User `json:",omitempty"`
	// Chroot enters Root with chroot(2) rather than pivot_root: a run
	// without namespaces (chroot.go).
	Chroot bool `json:",omitempty"`
}

// defaultPath is the PATH of the clean environment.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// commandEnv is the command's environment: a clean default, TERM from
// the caller, then env (KEY=VALUE, later ones win).
func commandEnv(env []string) []string {
	vars := map[string]string{"PATH": defaultPath, "HOME": "/root"}
	order := []string{"PATH", "HOME"}
	if t := os.Getenv("TERM"); t != "" {
		vars["TERM"] = t
		order = append(order, "TERM")
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// execMain runs in its own copy of init's mount namespace: it makes the
// container's root its root and becomes the command. Failures are
// reported to Run on descriptor 3, which a successful exec closes.
func execMain() {
	unix.CloseOnExec(3)
	repFile := os.NewFile(3, "report")
	rep := json.NewEncoder(repFile)
	fail := func(kind string, code int, format string, a ...any) {
		rep.Encode(report{Error: fmt.Sprintf(format, a...), Kind: kind})
		os.Exit(code)
	}
	var x execPlan
	if err := json.Unmarshal([]byte(os.Getenv(envExec)), &x); err != nil {
		fail(kindSetup, 125, "exec stage: bad plan: %v", err)
	}
	if err := os.Chdir(x.Root); err != nil {
		fail(kindSetup, 125, "enter the container root: %v", err)
	}
	if x.Chroot {
		if err := unix.Chroot("."); err != nil {
			fail(kindSetup, 125, "chroot into %s: %v", x.Root, err)
		}
	} else {
		// pivot_root(".", ".") stacks the old root on the new one;
		// detaching it leaves only the container visible.
		if err := unix.PivotRoot(".", "."); err != nil {
			fail(kindSetup, 125, "pivot_root into %s: %v", x.Root, err)
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			fail(kindSetup, 125, "detach the host's root: %v", err)
		}
	}
	if err := os.Chdir("/"); err != nil {
		fail(kindSetup, 125, "chdir /: %v", err)
	}
	if err := os.Chdir(x.Workdir); err != nil {
		fail(kindSetup, 125, "workdir %s in the container: %v", x.Workdir, errors.Unwrap(err))
	}
	env := commandEnv(x.Env)
	path, err := lookPath(x.Args[0], env)
	if err != nil {
		kind, code := kindNotFound, 127
		if errors.Is(err, unix.EACCES) {
			kind, code = kindNotExec, 126
		}
		fail(kind, code, "%s: %v", x.Args[0], err)
	}
	if u := x.User; u != nil && u.ExternalUID >= 0 {
		os.Exit(runAsExternal(path, x.Args, env, u, repFile, fail))
	}
	if u := x.User; u != nil {
		if err := switchUser(u); err != nil {
			fail(kindSetup, 125, "run as user-id %d, group-id %d: %v (the container's user namespace must map them: see uids and gids)", u.UID, u.GID, err)
		}
	}
	err = syscall.Exec(path, x.Args, env)
	kind, code := kindNotExec, 126
	if errors.Is(err, unix.ENOENT) {
		kind, code = kindNotFound, 127 // e.g. a script's interpreter is missing
	}
	fail(kind, code, "exec %s: %v", path, err)
}

// switchUser makes this process u: its supplementary groups, group and
// user, for good (effective, real and saved ids).
func switchUser(u *User) error {
	groups := make([]int, len(u.Groups))
	copy(groups, u.Groups)
	if err := syscall.Setgroups(groups); err != nil && len(groups) > 0 {
		return fmt.Errorf("supplementary gids %v: %w", groups, err)
	}
	if err := syscall.Setresgid(u.GID, u.GID, u.GID); err != nil {
		return fmt.Errorf("group-id %d: %w", u.GID, err)
	}
	if err := syscall.Setresuid(u.UID, u.UID, u.UID); err != nil {
		return fmt.Errorf("user-id %d: %w", u.UID, err)
	}
	return nil
}

// runAsExternal runs the command at path in a user namespace of its own
// where u.UID is the container's u.ExternalUID (vagga's
// external-user-id) and every group of the container is itself, as
// u.UID, u.GID and u.Groups; it waits for it, passing signals on, and
// returns its exit status (or dies of the signal that killed it).
func runAsExternal(path string, args, env []string, u *User, report *os.File, fail func(kind string, code int, format string, a ...any)) int {
	gids, err := identityMap("/proc/self/gid_map")
	if err != nil {
		fail(kindSetup, 125, "external-user-id: %v", err)
	}
	setgroups := setgroupsAllowed()
	cmd := &exec.Cmd{Path: path, Args: args, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: u.UID, HostID: u.ExternalUID, Size: 1}},
		GidMappings:                gids,
		GidMappingsEnableSetgroups: setgroups,
		Credential:                 &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), NoSetGroups: !setgroups},
		Pdeathsig:                  syscall.SIGKILL,
	}
	for _, g := range u.Groups {
		cmd.SysProcAttr.Credential.Groups = append(cmd.SysProcAttr.Credential.Groups, uint32(g))
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	if err := cmd.Start(); err != nil {
		fail(kindSetup, 125, "start %s as user-id %d (the container's %d): %v", path, u.UID, u.ExternalUID, err)
	}
	report.Close() // started: nothing more to report
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		signal.Reset(ws.Signal())
		unix.Kill(os.Getpid(), ws.Signal())
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// identityMap maps every id of this process's namespace (from its
// uid_map or gid_map) onto itself, for a user namespace below it.
func identityMap(file string) ([]syscall.SysProcIDMap, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []syscall.SysProcIDMap
	for _, line := range strings.Split(string(data), "\n") {
		var inside, outside, count int
		if n, _ := fmt.Sscan(line, &inside, &outside, &count); n == 3 {
			out = append(out, syscall.SysProcIDMap{ContainerID: inside, HostID: inside, Size: count})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s maps nothing", file)
	}
	return out, nil
}

// setgroupsAllowed reports whether this process's user namespace lets it
// set supplementary groups (not with the single-id map).
func setgroupsAllowed() bool {
	data, err := os.ReadFile("/proc/self/setgroups")
	return err != nil || strings.TrimSpace(string(data)) == "allow"
}

// lookPath finds the command name in env's PATH, as a shell does: a name
// with a slash is used as it is. It returns ENOENT or EACCES.
func lookPath(name string, env []string) (string, error) {
	check := func(p string) error {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return unix.EACCES
		}
		return unix.Access(p, unix.X_OK)
	}
	if strings.Contains(name, "/") {
		return name, check(name)
	}
	pathVar := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	firstErr := error(unix.ENOENT)
	for _, dir := range filepath.SplitList(pathVar) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := check(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, unix.EACCES) && errors.Is(firstErr, unix.ENOENT) {
			firstErr = err
		}
	}
	if errors.Is(firstErr, unix.ENOENT) {
		return "", errors.New("not found in the container's PATH")
	}
	return "", firstErr
}
