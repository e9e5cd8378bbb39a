// Package runner runs a command in a container root, vagga-style: in new
// user (for a caller without CAP_SYS_ADMIN: an ordinary user, root in a
// default container), mount and pid namespaces, with the root
// mounted through the backend the caller chose, /proc, /sys, a minimal
// /dev, /tmp and /run, volumes, pivot_root, and a clean environment.
//
// Processes of one run:
//
//	caller (Run)          host namespaces; forwards signals, reads the report
//	└─ init (pid 1)       new namespaces; mounts everything, serves FUSE
//	   └─ exec stage      its own mount namespace: pivot_root, then exec CMD
//
// The init process stays alive while the command runs, so that a FUSE
// daemon serving the root lives in the same namespaces and outlives the
// command's exec; pivot_root happens in the exec stage's own copy of the
// mount namespace, so init keeps seeing the host paths of the layers.
//
// Writable runs get a fresh upper directory on a tmpfs private to the
// run, so nothing of it outlives the run even when it is killed; the copy
// backend's full copy lives in a transient directory NAME.PID on disk
// (PID of the init process) that Run removes, and CleanTransient removes
// when the run was killed.
//
// Where no namespace can be made (a seccomp filter forbids them), the
// copy backend still runs: the command enters its copy with chroot
// (chroot.go), without mounts.
package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/selector"
)

// Volume kinds.
const (
	Snapshot = "snapshot" // the path's contents, writable, discarded at exit
	Bind     = "bind"     // a host directory
	Tmpfs    = "tmpfs"    // an empty tmpfs
	Empty    = "empty"    // an empty read-only directory (vagga's !Empty)
)

// DefaultVolumeSize is the size of a snapshot or tmpfs volume whose Size
// is 0, as vagga's default.
const DefaultVolumeSize = 100 << 20

// Volume is something mounted over a path inside the container.
type Volume struct {
	Path     string // absolute, inside the container
	Kind     string // Snapshot, Bind, Tmpfs or Empty
	Size     int64  // bytes for snapshot/tmpfs; 0 means 100Mi
	UID, GID int    // owner for snapshot/tmpfs; -1 keeps the mountpoint's
	From     string // snapshot: host dir whose contents to use instead of the container's path
	HostDir  string // bind
	ReadOnly bool   // bind
	// Mode is a tmpfs root's mode (vagga's mode:); nil keeps the
	// mountpoint's.
	Mode *uint32 `json:",omitempty"`
	// Subdirs and Files are made in a tmpfs once it is mounted, in
	// order (parents first), owned by root.
	Subdirs []TmpfsDir  `json:",omitempty"`
	Files   []TmpfsFile `json:",omitempty"`
}

// TmpfsDir is a directory made in a tmpfs volume.
type TmpfsDir struct {
	Path string // relative to the volume
	Mode uint32
}

// TmpfsFile is a file made in a tmpfs volume, mode 0644.
type TmpfsFile struct {
	Path    string // relative to the volume
	Content string
}

// User is who a command runs as inside the container instead of root
// (vagga's user-id, group-id, supplementary-gids, external-user-id).
type User struct {
	UID, GID int
	Groups   []int
	// ExternalUID, when not -1, is the container's id the command's UID
	// stands for: the command runs in a user namespace of its own where
	// UID is mapped onto it (so with 0, files it writes in /work are the
	// caller's while it is not root to itself).
	ExternalUID int
}

// HostFile is a file of the host shown read-only at a path of the
// container (vagga's resolv-conf-path and hosts-file-path). A path the
// container does not have is made in a writable run, and skipped in a
// read-only one.
type HostFile struct {
	Src, Dst string
}

// Config is one run.
type Config struct {
	Layers      []string // the container root's layers, top first (a plain root is one)
	Writable    bool     // a throw-away upper over Layers
	KeepChanges string   // with Writable: keep the upper here as a layer (layer format)
	Volumes     []Volume
	Env         []string // KEY=VALUE over a clean default environment
	Workdir     string   // inside the container; default "/"
	BindWork    string   // host dir bound at /work
	Args        []string
	// Decision is the selector's choice of backend for the root and the
	// Snapshot volumes, and of their metadata namespace; required. Init
	// opens the backend it names: nothing is chosen again.
	Decision selector.Decision
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer

	// Name names the run's transient directory NAME.PID; default the
	// base name of Layers[0].
	Name string
	// TransientDir holds transient directories (e.g. a project's
	// .vagga/.transient); default paths.StateDir()/transient.
	TransientDir string
	// UIDs and GIDs are the container's ranges of user and group ids
	// that an ordinary user's subordinate ids are mapped onto (vagga's
	// uids and gids); nil means 0-65535. Root's runs map nothing.
	UIDs, GIDs []idmap.Range
	// User, when set, runs the command as another user than root.
	User *User
	// HostFiles are host files shown at paths of the container.
	HostFiles []HostFile
	// EnvironFile is a file of the container with NAME=value lines
	// (vagga's environ-file), read when the command starts, under Env.
	EnvironFile string
	// IsolateNetwork runs the command in a network namespace of its own
	// with only the loopback device, up (vagga's isolate-network).
	IsolateNetwork bool
	// KeepTmp leaves the container's own /tmp in place of a fresh tmpfs,
	// as vagga's builds do: a step sees what earlier steps put there.
	KeepTmp bool
	// Signals, when set, passes signals to the command besides those
	// this process gets (a supervisor stopping one of its runs).
	Signals <-chan os.Signal
}

// Result is how the command ended.
type Result struct {
	// ExitCode is the command's exit status, or 128+signal when a signal
	// killed it (as a shell reports it).
	ExitCode int
	// Signal is the signal that killed the command, 0 if it exited.
	Signal syscall.Signal
	// Backend is the backend that mounted the root: cfg.Decision's, or
	// "bind" for a read-only run of a single layer, which needs none.
	Backend string
}

// Sentinel errors, to be tested with errors.Is.
var (
	// ErrBadConfig reports a Config that cannot run: a missing root, a
	// bad volume, no command. Nothing was mounted.
	ErrBadConfig = errors.New("bad run configuration")
	// ErrCommandNotFound reports a command that does not exist in the
	// container (shells exit 127 for it).
	ErrCommandNotFound = errors.New("command not found in the container")
	// ErrNotExecutable reports a command that exists but cannot be
	// executed (shells exit 126 for it).
	ErrNotExecutable = errors.New("command not executable")
)

// ConfigError says which part of a Config is wrong and what to do.
type ConfigError struct {
	Field string // "layer[0]", "volume /etc", "args"...
	Err   error
	Hint  string
}

func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Field, e.Err)
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// Unwrap returns ErrBadConfig and the cause.
func (e *ConfigError) Unwrap() []error { return []error{ErrBadConfig, e.Err} }

// Validate reports the first mistake in c that would stop Run before it
// starts anything (a missing root, a bad volume, no command), as a
// *ConfigError wrapping ErrBadConfig. It does not look at Decision, so a
// caller can validate before asking the selector.
func (c Config) Validate() error {
	return c.normalize()
}

// check validates c on the host, before anything is started, and makes
// its paths absolute (in copies of the caller's slices).
func (c *Config) check() error {
	if c.Decision.Backend == "" {
		return &ConfigError{Field: "backend", Err: errors.New("none given"), Hint: "ask the selector for a Decision"}
	}
	return c.normalize()
}

func (c *Config) normalize() error {
	c.Layers = append([]string(nil), c.Layers...)
	c.Volumes = append([]Volume(nil), c.Volumes...)
	if len(c.Layers) == 0 {
		return &ConfigError{Field: "layers", Err: errors.New("no container root given")}
	}
	for i, l := range c.Layers {
		fi, err := os.Stat(l)
		if err != nil {
			return &ConfigError{Field: fmt.Sprintf("root layer %s", l), Err: err, Hint: "build the container first, or fix the path"}
		}
		if !fi.IsDir() {
			return &ConfigError{Field: fmt.Sprintf("root layer %s", l), Err: errors.New("not a directory")}
		}
		abs, err := filepath.Abs(l)
		if err != nil {
			return &ConfigError{Field: fmt.Sprintf("root layer %s", l), Err: err}
		}
		c.Layers[i] = abs
	}
	if len(c.Args) == 0 || c.Args[0] == "" {
		return &ConfigError{Field: "command", Err: errors.New("no command given"), Hint: "name the command to run after --"}
	}
	if c.KeepChanges != "" && !c.Writable {
		return &ConfigError{Field: "keep-changes", Err: errors.New("needs a writable run"), Hint: "add --writable"}
	}
	if c.KeepChanges != "" {
		abs, err := filepath.Abs(c.KeepChanges)
		if err != nil {
			return &ConfigError{Field: "keep-changes " + c.KeepChanges, Err: err}
		}
		c.KeepChanges = abs
	}
	for _, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return &ConfigError{Field: "env " + e, Err: errors.New("not KEY=VALUE")}
		}
	}
	if c.Workdir == "" {
		c.Workdir = "/"
	}
	if !filepath.IsAbs(c.Workdir) {
		return &ConfigError{Field: "workdir " + c.Workdir, Err: errors.New("not an absolute path"), Hint: "give the directory as seen inside the container"}
	}
	if c.BindWork != "" {
		if err := isDir(c.BindWork); err != nil {
			return &ConfigError{Field: "bind-work " + c.BindWork, Err: err}
		}
		c.BindWork, _ = filepath.Abs(c.BindWork)
	}
	if c.User != nil && (c.User.UID < 0 || c.User.GID < 0) {
		return &ConfigError{Field: "user", Err: fmt.Errorf("uid %d, gid %d", c.User.UID, c.User.GID), Hint: "give ids of 0 or more"}
	}
	for _, f := range c.HostFiles {
		if !filepath.IsAbs(f.Dst) {
			return &ConfigError{Field: "host file " + f.Dst, Err: errors.New("not an absolute path in the container")}
		}
	}
	if c.EnvironFile != "" && !filepath.IsAbs(c.EnvironFile) {
		return &ConfigError{Field: "environ-file " + c.EnvironFile, Err: errors.New("not an absolute path in the container")}
	}
	seen := map[string]bool{}
	for i := range c.Volumes {
		v := &c.Volumes[i]
		if err := v.check(); err != nil {
			return err
		}
		if seen[v.Path] {
			return &ConfigError{Field: "volume " + v.Path, Err: errors.New("given twice")}
		}
		seen[v.Path] = true
	}
	return nil
}

// check validates v and makes its host paths absolute.
func (v *Volume) check() error {
	field := "volume " + v.Path
	if !filepath.IsAbs(v.Path) {
		return &ConfigError{Field: field, Err: errors.New("not an absolute path"), Hint: "give the path as seen inside the container, e.g. /etc"}
	}
	for _, part := range strings.Split(v.Path, "/") {
		if part == ".." {
			return &ConfigError{Field: field, Err: errors.New("path leaves the container root"), Hint: "remove the .. components"}
		}
	}
	v.Path = filepath.Clean(v.Path)
	if v.Path == "/" {
		return &ConfigError{Field: field, Err: errors.New("cannot mount a volume over the root"), Hint: "use --writable for a writable root"}
	}
	if v.Size < 0 {
		return &ConfigError{Field: field, Err: fmt.Errorf("negative size %d", v.Size)}
	}
	if v.Size == 0 {
		v.Size = DefaultVolumeSize
	}
	for _, p := range append(tmpfsPaths(v.Subdirs), tmpfsFilePaths(v.Files)...) {
		if v.Kind != Tmpfs {
			return &ConfigError{Field: field, Err: errors.New("subdirectories and files are for a tmpfs")}
		}
		if filepath.IsAbs(p) || p == ".." || strings.HasPrefix(filepath.Clean(p), "../") {
			return &ConfigError{Field: field, Err: fmt.Errorf("%q is not a path below the volume", p)}
		}
	}
	switch v.Kind {
	case Snapshot:
		if v.From != "" {
			if err := isDir(v.From); err != nil {
				return &ConfigError{Field: field, Err: fmt.Errorf("from %s: %w", v.From, err)}
			}
			v.From, _ = filepath.Abs(v.From)
		}
	case Bind:
		if v.HostDir == "" {
			return &ConfigError{Field: field, Err: errors.New("bind without a host directory"), Hint: "write PATH=bind:HOSTDIR"}
		}
		if err := isDir(v.HostDir); err != nil {
			return &ConfigError{Field: field, Err: fmt.Errorf("host directory %s: %w", v.HostDir, err)}
		}
		v.HostDir, _ = filepath.Abs(v.HostDir)
	case Tmpfs, Empty:
	default:
		return &ConfigError{Field: field, Err: fmt.Errorf("unknown volume kind %q", v.Kind), Hint: "use snapshot, bind or tmpfs"}
	}
	return nil
}

func tmpfsPaths(ds []TmpfsDir) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Path
	}
	return out
}

func tmpfsFilePaths(fs []TmpfsFile) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Path
	}
	return out
}

func isDir(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	return nil
}
