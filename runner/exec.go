package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
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
	rep := json.NewEncoder(os.NewFile(3, "report"))
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
	err = syscall.Exec(path, x.Args, env)
	kind, code := kindNotExec, 126
	if errors.Is(err, unix.ENOENT) {
		kind, code = kindNotFound, 127 // e.g. a script's interpreter is missing
	}
	fail(kind, code, "exec %s: %v", path, err)
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
