package vagga

import (
	"errors"
	"sort"

	"github.com/ovl-dev/ovl/internal/idmap"
)

// Config is a parsed vagga.yaml, with its mixins merged in.
type Config struct {
	// File is the path the config was read from (it may not exist when
	// the project is marked by a local mixin only, as vagga allows).
	File string
	// Dir is the project directory: the one holding vagga.yaml (or
	// holding .vagga/vagga.yaml), bound at /work.
	Dir        string
	Containers map[string]*Container
	Commands   map[string]*Command
	// Mixins lists the mixin files that were merged in, in the order
	// they were read (local mixins first).
	Mixins []string
}

// ContainerNames lists the containers in name order.
func (c *Config) ContainerNames() []string { return sortedKeys(c.Containers) }

// CommandNames lists the commands in name order.
func (c *Config) CommandNames() []string { return sortedKeys(c.Commands) }

// LookupCommand returns the command name names, or the command that has
// name among its aliases (a command's own name wins over an alias, as in
// vagga).
func (c *Config) LookupCommand(name string) (*Command, bool) {
	if cmd, ok := c.Commands[name]; ok {
		return cmd, true
	}
	for _, n := range c.CommandNames() {
		for _, a := range c.Commands[n].Aliases {
			if a == name {
				return c.Commands[n], true
			}
		}
	}
	return nil, false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Container is one entry of containers:.
type Container struct {
	Name string
	Pos  Pos
	// Setup lists the build steps in order.
	Setup []Step
	// Environ is set for commands run in the container (not while
	// building); it overrides EnvironFile value by value.
	Environ []EnvVar
	// EnvironFile is a file inside the container with NAME=value lines
	// read when a command starts (environ-file); "" for none.
	EnvironFile string
	// Volumes are mounted when a command runs in the container.
	Volumes []Volume
	// UIDs and GIDs are the ranges of user and group ids the container
	// maps for an ordinary user (uids:, gids:); nil means vagga's
	// default, 0-65535.
	UIDs, GIDs []idmap.Range
	// ResolvConfPath and HostsFilePath are where the host's
	// /etc/resolv.conf and /etc/hosts appear when a command runs
	// (resolv-conf-path, hosts-file-path); "" (YAML null) for nowhere.
	ResolvConfPath, HostsFilePath string
	// AutoClean removes the container's older roots once a new one is
	// built (auto-clean).
	AutoClean bool
	// DataDirs, when set, are the only paths kept in the container at
	// the end of its build (data-dirs).
	DataDirs []string
	// DefaultShell runs a command whose run: is a string; "$cmdline"
	// stands for the string. nil means vagga's [/bin/sh, -c, $cmdline, --].
	DefaultShell []string
	// Unsupported lists what ovl cannot do in this container: each is a
	// *Error naming the line. Building or running the container fails
	// with them (Config.Check); other containers are not affected.
	Unsupported []error
}

// Parent returns the container this one is built on (its first step is
// !Container NAME), or "".
func (c *Container) Parent() string {
	if len(c.Setup) > 0 {
		if s, ok := c.Setup[0].(*ContainerStep); ok {
			return s.Name
		}
	}
	return ""
}

// EnvVar is one NAME=value pair; lists of them keep the file's order
// only where it matters (it never does for a mapping, so parsers sort).
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// String returns NAME=value.
func (e EnvVar) String() string { return e.Name + "=" + e.Value }

// WriteMode says what a command may do to its container's root.
type WriteMode string

const (
	// ReadOnly mounts the root read-only (vagga's default).
	ReadOnly WriteMode = "read-only"
	// TransientCopy gives the command a writable root whose changes are
	// thrown away when it exits (vagga's transient-hard-link-copy).
	TransientCopy WriteMode = "transient-hard-link-copy"
)

// Command kinds.
const (
	KindCommand   = "!Command"
	KindSupervise = "!Supervise"
)

// Supervise modes.
const (
	StopOnFailure     = "stop-on-failure"
	WaitAllSuccessful = "wait-all-successful"
)

// Command is one entry of commands: (Kind !Command or !Supervise), or a
// child of a !Supervise (Kind !Command).
type Command struct {
	Name string
	Pos  Pos
	Kind string
	// Common to both kinds.
	Description   string
	Banner        string
	BannerDelay   int // seconds
	Epilog        string
	Aliases       []string
	Group         string
	Prerequisites []string
	Options       string // a docopt usage text (vagga's options:)
	// InotifyLimit is expect-inotify-limit: the fs.inotify.max_user_watches
	// the command wants (0: none).
	InotifyLimit int
	SymlinkName  string
	Tags         []string
	// IsolateNetwork runs the command (each child of a !Supervise) with
	// a network of its own: only lo.
	IsolateNetwork bool

	// !Command.
	Container string
	// Run is the argv of a run: list; Script the text of a run: string,
	// which the container's default shell runs.
	Run    []string
	Script string
	// AcceptsArguments is accepts-arguments; nil means vagga's default
	// (false for a run: string, true for a list).
	AcceptsArguments *bool
	Environ          []EnvVar
	Volumes          []Volume
	WriteMode        WriteMode
	WorkDir          string // relative to /work; "" means the current directory's place
	Pid1Mode         string
	UserID           int
	// ExternalUserID is the id UserID stands for in the container's
	// namespace; -1 when not set.
	ExternalUserID    int
	GroupID           int
	SupplementaryGIDs []int

	// !Supervise.
	Mode                  string
	KillUnresponsiveAfter int // seconds
	Children              map[string]*Command

	// Unsupported lists what ovl cannot do for this command (*Error
	// values naming the line); running it fails with them.
	Unsupported []error
}

// IsShell reports whether run: was a string.
func (c *Command) IsShell() bool { return c.Run == nil }

// TakesArguments reports whether extra command-line arguments go to the
// command (accepts-arguments, with vagga's default).
func (c *Command) TakesArguments() bool {
	if c.AcceptsArguments != nil {
		return *c.AcceptsArguments
	}
	return !c.IsShell()
}

// ChildNames lists a !Supervise's children in name order.
func (c *Command) ChildNames() []string { return sortedKeys(c.Children) }

// Check reports what keeps the containers names, and every container
// they need (parents, snapshot and !Container volume sources), from
// being built or run: each container's Unsupported, joined. nil means
// they can all be built.
func (c *Config) Check(names ...string) error {
	var errs []error
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		ct, ok := c.Containers[name]
		if !ok || seen[name] {
			return
		}
		seen[name] = true
		for _, dep := range Dependencies(ct) {
			visit(dep)
		}
		errs = append(errs, ct.Unsupported...)
	}
	for _, n := range names {
		visit(n)
	}
	return errors.Join(errs...)
}

// CheckCommand reports what keeps command name from running: what it
// (or a child of a !Supervise) uses that ovl cannot do, and Check of the
// containers it runs in. Prerequisites are commands of their own, each
// checked when it runs.
func (c *Config) CheckCommand(name string) error {
	cmd, ok := c.LookupCommand(name)
	if !ok {
		return nil
	}
	var errs []error
	var containers []string
	var visit func(cmd *Command)
	visit = func(cmd *Command) {
		errs = append(errs, cmd.Unsupported...)
		if cmd.Container != "" {
			containers = append(containers, cmd.Container)
		}
		for _, v := range cmd.Volumes {
			if v.Container != "" {
				containers = append(containers, v.Container)
			}
		}
		for _, n := range cmd.ChildNames() {
			visit(cmd.Children[n])
		}
	}
	visit(cmd)
	if err := c.Check(containers...); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
