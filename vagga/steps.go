package vagga

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Step is one build step of a container's setup:. The concrete types are
// the *Step structs of this file; the build engine switches on them.
type Step interface {
	// Tag is the step's YAML tag, e.g. "!Sh".
	Tag() string
	// Position is where the step was written.
	Position() Pos
	// Summary is a short one-line form for progress output.
	Summary() string
}

// Reader is a step whose result depends on files of the project, whose
// content the build engine hashes into the step's key.
type Reader interface {
	Step
	// HostPaths lists the files or directories the step reads, as host
	// paths.
	HostPaths() []string
}

// Canonical returns the form of s that its cache key hashes: the tag and
// the fields as written, without positions, as JSON with a fixed field
// order. Two configs that differ only in layout give the same bytes.
func Canonical(s Step) []byte {
	b, err := json.Marshal(struct {
		Tag  string `json:"tag"`
		Step Step   `json:"step"`
	}{s.Tag(), s})
	if err != nil {
		panic(fmt.Sprintf("vagga: encode %s: %v", s.Tag(), err)) // only plain fields: cannot happen
	}
	return b
}

// TarStep unpacks a local tarball (!Tar): url is a path in the project,
// path is where in the container (default "/"), subdir the part of the
// archive to take (default: all).
type TarStep struct {
	URL    string `json:"url"`
	Path   string `json:"path"`
	Subdir string `json:"subdir"`
	SHA256 string `json:"sha256,omitempty"`
	// HostFile is URL resolved on the host.
	HostFile string `json:"-"`
	Pos      Pos    `json:"-"`
}

// ShStep runs a shell script with /bin/sh -exc (!Sh).
type ShStep struct {
	Script string `json:"script"`
	Pos    Pos    `json:"-"`
}

// CmdStep runs a command without a shell (!Cmd).
type CmdStep struct {
	Args []string `json:"args"`
	Pos  Pos      `json:"-"`
}

// TextFile is one file of a !Text step.
type TextFile struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// TextStep writes files with the given contents, mode 0644, owned by root
// (!Text). Files are sorted by path.
type TextStep struct {
	Files []TextFile `json:"files"`
	Pos   Pos        `json:"-"`
}

// PathFilter is what a !Copy or !Depends leaves out of a directory:
// vagga's ignore-regex and include-regex, or its rules (globs; see
// builder/copyfilter.go), and no-default-rules. Unset fields take
// vagga's defaults.
type PathFilter struct {
	IgnoreRegex    *string  `json:"ignore-regex,omitempty"`
	IncludeRegex   *string  `json:"include-regex,omitempty"`
	Rules          []string `json:"rules,omitempty"`
	NoDefaultRules bool     `json:"no-default-rules,omitempty"`
}

// CopyStep copies a file or directory into the container (!Copy): of
// the project when Source is /work or below (or relative), else of the
// container being built (InContainer). As vagga: owners are kept unless
// OwnerUID/OwnerGID set them; modes become 0o777 (directories and
// executables) or 0o666 less Umask unless PreservePermissions; times
// become 1 (the first second of 1970) unless PreserveTimes; symlinks
// are copied as they are; Filter leaves entries out.
type CopyStep struct {
	Source              string     `json:"source"`
	Path                string     `json:"path"`
	OwnerUID            *int       `json:"owner-uid,omitempty"`
	OwnerGID            *int       `json:"owner-gid,omitempty"`
	Umask               uint32     `json:"umask"`
	PreservePermissions bool       `json:"preserve-permissions,omitempty"`
	PreserveTimes       bool       `json:"preserve-times,omitempty"`
	Filter              PathFilter `json:"filter"`
	InContainer         bool       `json:"in-container,omitempty"`
	// HostSource is Source resolved on the host ("" when InContainer).
	HostSource string `json:"-"`
	Pos        Pos    `json:"-"`
}

// DefaultUmask is !Copy's umask unless it says otherwise.
const DefaultUmask = 0o002

// EnvStep sets environment variables for the build steps after it and
// for commands run in the container (!Env). Sorted by name.
type EnvStep struct {
	Vars []EnvVar `json:"vars"`
	Pos  Pos      `json:"-"`
}

// RemoveStep deletes a file or directory (!Remove).
type RemoveStep struct {
	Path string `json:"path"`
	Pos  Pos    `json:"-"`
}

// EnsureDirStep creates a directory and its parents if missing (!EnsureDir).
type EnsureDirStep struct {
	Path string `json:"path"`
	Pos  Pos    `json:"-"`
}

// EmptyDirStep empties a directory, creating it if missing (!EmptyDir).
type EmptyDirStep struct {
	Path string `json:"path"`
	Pos  Pos    `json:"-"`
}

// DependsStep makes the steps after it rebuild when a project file or
// directory changes (!Depends), with what Filter leaves out; it changes
// nothing in the container.
type DependsStep struct {
	Path     string     `json:"path"`
	Filter   PathFilter `json:"filter"`
	HostPath string     `json:"-"`
	Pos      Pos        `json:"-"`
}

// CacheDirsStep mounts directories of .vagga/.cache at paths of the
// container for the command steps after it, in this container and the
// ones built on it (!CacheDirs): downloads survive rebuilds. The
// directories stay in the container, empty.
type CacheDirsStep struct {
	Dirs []CacheDir `json:"dirs"`
	Pos  Pos        `json:"-"`
}

// CacheDir is one path: name of a !CacheDirs step.
type CacheDir struct {
	Path string `json:"path"`
	Name string `json:"name"`
}

// RunAsStep runs a shell script as another user (!RunAs), with
// /bin/sh -exc.
type RunAsStep struct {
	Script            string `json:"script"`
	UserID            int    `json:"user-id"`
	ExternalUserID    int    `json:"external-user-id"` // -1: not set
	GroupID           int    `json:"group-id"`
	SupplementaryGIDs []int  `json:"supplementary-gids,omitempty"`
	WorkDir           string `json:"work-dir"`
	IsolateNetwork    bool   `json:"isolate-network,omitempty"`
	Pos               Pos    `json:"-"`
}

// BuildStep copies a directory of another container's built root into
// this one (!Build with path:), or mounts it read-only at
// TemporaryMount for the command steps after it (in this container
// only), with Rules choosing what is copied.
type BuildStep struct {
	Container      string   `json:"container"`
	Source         string   `json:"source"`
	Path           string   `json:"path,omitempty"`
	TemporaryMount string   `json:"temporary-mount,omitempty"`
	Rules          []string `json:"rules,omitempty"`
	ContentHash    bool     `json:"content-hash,omitempty"`
	// HostRoot is the built root of Container, which the build engine
	// sets when it has built it.
	HostRoot string `json:"-"`
	Pos      Pos    `json:"-"`
}

// ContainerStep builds on another container (!Container), as the first
// step: its layers become the bottom of this container's stack.
type ContainerStep struct {
	Name string `json:"name"`
	Pos  Pos    `json:"-"`
}

func (*TarStep) Tag() string       { return "!Tar" }
func (*ShStep) Tag() string        { return "!Sh" }
func (*CmdStep) Tag() string       { return "!Cmd" }
func (*TextStep) Tag() string      { return "!Text" }
func (*CopyStep) Tag() string      { return "!Copy" }
func (*EnvStep) Tag() string       { return "!Env" }
func (*RemoveStep) Tag() string    { return "!Remove" }
func (*EnsureDirStep) Tag() string { return "!EnsureDir" }
func (*EmptyDirStep) Tag() string  { return "!EmptyDir" }
func (*DependsStep) Tag() string   { return "!Depends" }
func (*ContainerStep) Tag() string { return "!Container" }
func (*CacheDirsStep) Tag() string { return "!CacheDirs" }
func (*RunAsStep) Tag() string     { return "!RunAs" }
func (*BuildStep) Tag() string     { return "!Build" }

func (s *TarStep) Position() Pos       { return s.Pos }
func (s *ShStep) Position() Pos        { return s.Pos }
func (s *CmdStep) Position() Pos       { return s.Pos }
func (s *TextStep) Position() Pos      { return s.Pos }
func (s *CopyStep) Position() Pos      { return s.Pos }
func (s *EnvStep) Position() Pos       { return s.Pos }
func (s *RemoveStep) Position() Pos    { return s.Pos }
func (s *EnsureDirStep) Position() Pos { return s.Pos }
func (s *EmptyDirStep) Position() Pos  { return s.Pos }
func (s *DependsStep) Position() Pos   { return s.Pos }
func (s *ContainerStep) Position() Pos { return s.Pos }
func (s *CacheDirsStep) Position() Pos { return s.Pos }
func (s *RunAsStep) Position() Pos     { return s.Pos }
func (s *BuildStep) Position() Pos     { return s.Pos }

func (s *TarStep) Summary() string { return fmt.Sprintf("!Tar %s", quoteShort(s.URL)) }
func (s *ShStep) Summary() string  { return fmt.Sprintf("!Sh %s", quoteShort(s.Script)) }
func (s *CmdStep) Summary() string {
	return fmt.Sprintf("!Cmd %s", quoteShort(strings.Join(s.Args, " ")))
}
func (s *TextStep) Summary() string {
	names := make([]string, len(s.Files))
	for i, f := range s.Files {
		names[i] = f.Path
	}
	return fmt.Sprintf("!Text %s", quoteShort(strings.Join(names, " ")))
}
func (s *CopyStep) Summary() string {
	return fmt.Sprintf("!Copy %s", quoteShort(s.Source+" -> "+s.Path))
}
func (s *EnvStep) Summary() string {
	names := make([]string, len(s.Vars))
	for i, v := range s.Vars {
		names[i] = v.Name
	}
	return fmt.Sprintf("!Env %s", quoteShort(strings.Join(names, " ")))
}
func (s *RemoveStep) Summary() string    { return "!Remove " + quoteShort(s.Path) }
func (s *EnsureDirStep) Summary() string { return "!EnsureDir " + quoteShort(s.Path) }
func (s *EmptyDirStep) Summary() string  { return "!EmptyDir " + quoteShort(s.Path) }
func (s *DependsStep) Summary() string   { return "!Depends " + quoteShort(s.Path) }
func (s *ContainerStep) Summary() string { return "!Container " + quoteShort(s.Name) }
func (s *CacheDirsStep) Summary() string {
	names := make([]string, len(s.Dirs))
	for i, d := range s.Dirs {
		names[i] = d.Path
	}
	return "!CacheDirs " + quoteShort(strings.Join(names, " "))
}
func (s *RunAsStep) Summary() string { return "!RunAs " + quoteShort(s.Script) }
func (s *BuildStep) Summary() string {
	to := s.Path
	if to == "" {
		to = s.TemporaryMount
	}
	return "!Build " + quoteShort(s.Container+":"+s.Source+" -> "+to)
}

func (s *TarStep) HostPaths() []string { return []string{s.HostFile} }
func (s *CopyStep) HostPaths() []string {
	if s.InContainer {
		return nil // vagga versions it by the step alone
	}
	return []string{s.HostSource}
}
func (s *DependsStep) HostPaths() []string { return []string{s.HostPath} }

// quoteShort quotes the first line of s, cut to 40 characters, with "…"
// where something was left out.
func quoteShort(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	short := strings.Join(strings.Fields(lines[0]), " ")
	more := len(lines) > 1
	if r := []rune(short); len(r) > 40 {
		short, more = string(r[:39]), true
	}
	if more {
		short += " …"
	}
	return `"` + short + `"`
}
