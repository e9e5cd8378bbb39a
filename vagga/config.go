package vagga

import (
	"sort"

	"github.com/ovl-dev/ovl/internal/idmap"
)

// Config is a parsed vagga.yaml.
type Config struct {
	// File is the path the config was read from.
	File string
	// Dir is the project directory: the one holding File, bound at /work.
	Dir        string
	Containers map[string]*Container
	Commands   map[string]*Command
}

// ContainerNames lists the containers in name order.
func (c *Config) ContainerNames() []string { return sortedKeys(c.Containers) }

// CommandNames lists the commands in name order.
func (c *Config) CommandNames() []string { return sortedKeys(c.Commands) }

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
	// Environ is set for commands run in the container (not while building).
	Environ []EnvVar
	// Volumes are mounted when a command runs in the container.
	Volumes []Volume
	// UIDs and GIDs are the ranges of user and group ids the container
	// maps for an ordinary user (uids:, gids:); nil means vagga's
	// default, 0-65535.
	UIDs, GIDs []idmap.Range
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

// Volume is a path of the container with something mounted on it at run
// time.
type Volume struct {
	Path string
	Pos  Pos
	// Kind is "snapshot", "tmpfs", "bind".
	Kind string
	// Size in bytes for snapshot and tmpfs; 0 means the default (100Mi).
	Size int64
	// UID and GID own the snapshot or tmpfs root; -1 keeps the
	// mountpoint's owner.
	UID, GID int
	// Mode of a tmpfs root; 0 means 0766, as vagga.
	Mode uint32
	// Container is a snapshot's source container instead of this one.
	Container string
	// HostPath is the bind source, absolute on the host (a "/work/..."
	// source is resolved against the project directory).
	HostPath string
	ReadOnly bool
}

// Volume kinds.
const (
	VolumeSnapshot = "snapshot"
	VolumeTmpfs    = "tmpfs"
	VolumeBind     = "bind"
)

// WriteMode says what a command may do to its container's root.
type WriteMode string

const (
	// ReadOnly mounts the root read-only (vagga's default).
	ReadOnly WriteMode = "read-only"
	// TransientCopy gives the command a writable root whose changes are
	// thrown away when it exits (vagga's transient-hard-link-copy).
	TransientCopy WriteMode = "transient-hard-link-copy"
)

// Command is one !Command entry of commands:.
type Command struct {
	Name      string
	Pos       Pos
	Container string
	// Run is the argv; a run: string becomes ["/bin/sh", "-c", string].
	Run         []string
	Environ     []EnvVar
	Volumes     []Volume
	WriteMode   WriteMode
	WorkDir     string // relative to /work; "" means /work
	Description string
}
