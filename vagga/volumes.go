package vagga

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Volume is a path of the container with something mounted on it at run
// time.
type Volume struct {
	Path string
	Pos  Pos
	// Kind is one of the Volume* constants.
	Kind string
	// Size in bytes for snapshot and tmpfs; 0 means the default (100Mi).
	Size int64
	// UID and GID own the snapshot root (-1: keep the mountpoint's) or a
	// persistent volume when it is created (default 0).
	UID, GID int
	// Mode of a tmpfs root (vagga's default 0o1777).
	Mode uint32
	// Subdirs and Files are made in a tmpfs when it is mounted.
	Subdirs []TmpfsDir
	Files   []TmpfsFile
	// Container is a snapshot's source container (its directory at the
	// same path), or the container a !Container volume shows.
	Container string
	// HostPath is the bind source, absolute on the host (a "/work/..."
	// source is resolved against the project directory).
	HostPath string
	ReadOnly bool
	// Name is a persistent volume's name (.vagga/.volumes/NAME) or a
	// cache directory's (.vagga/.cache/NAME).
	Name string
	// InitCommand is the command that fills a new persistent volume.
	InitCommand string
}

// TmpfsDir is a directory a !Tmpfs volume is created with.
type TmpfsDir struct {
	Path string // relative to the volume
	Mode uint32 // default 0o755
}

// TmpfsFile is a file a !Tmpfs volume is created with.
type TmpfsFile struct {
	Path    string // relative to the volume
	Content string
}

// Volume kinds.
const (
	VolumeSnapshot   = "snapshot"   // !Snapshot
	VolumeTmpfs      = "tmpfs"      // !Tmpfs
	VolumeBind       = "bind"       // !BindRW, !BindRO
	VolumeEmpty      = "empty"      // !Empty
	VolumePersistent = "persistent" // !Persistent
	VolumeCacheDir   = "cachedir"   // !CacheDir
	VolumeContainer  = "container"  // !Container
)

// Defaults of vagga's volumes.
const (
	DefaultTmpfsMode   = 0o1777
	DefaultSubdirMode  = 0o755
	DefaultVolumeBytes = 100 << 20
)

// volumes reads a PATH: !Kind mapping, in path order. A volume ovl cannot
// mount is left out and its error added to unsupported.
func (p *parser) volumes(n *yaml.Node, unsupported *[]error) ([]Volume, error) {
	var out []Volume
	err := p.mapping(n, func(key string, k, v *yaml.Node) error {
		dst, err := p.containerPath(k, "volume path")
		if err != nil {
			return err
		}
		if dst == "/" {
			return p.errf(k, ErrInvalid, "a volume cannot be mounted over /", "")
		}
		vol, err := p.volume(dst, resolve(v))
		switch {
		case err == nil:
			out = append(out, vol)
		case isUnsupported(err):
			*unsupported = append(*unsupported, err)
			err = nil
		}
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

func (p *parser) volume(dst string, n *yaml.Node) (Volume, error) {
	v := Volume{Path: dst, Pos: p.pos(n), UID: -1, GID: -1}
	switch n.Tag {
	case "!Snapshot":
		v.Kind = VolumeSnapshot
		return v, p.structure(n, "!Snapshot", func(key string, k, val *yaml.Node) error {
			var err error
			switch key {
			case "size":
				v.Size, err = p.size(val)
			case "owner-uid":
				v.UID, err = p.boundedInt(val, key, 0, 1<<31-1)
			case "owner-gid":
				v.GID, err = p.boundedInt(val, key, 0, 1<<31-1)
			case "container":
				v.Container, err = p.scalar(val, "container")
			default:
				err = p.unknownKey(k, "!Snapshot", "size, owner-uid, owner-gid, container")
			}
			return err
		})
	case "!Tmpfs":
		v.Kind, v.Mode = VolumeTmpfs, DefaultTmpfsMode
		return v, p.structure(n, "!Tmpfs", func(key string, k, val *yaml.Node) error {
			var err error
			switch key {
			case "size":
				v.Size, err = p.size(val)
			case "mode":
				v.Mode, err = p.mode(val, "mode", 0o1777)
			case "subdirs":
				err = p.mapping(val, func(sub string, sk, sv *yaml.Node) error {
					rel, err := p.relativePath(sk, "a subdirs path")
					if err != nil {
						return err
					}
					d := TmpfsDir{Path: rel, Mode: DefaultSubdirMode}
					err = p.structure(sv, "a !Tmpfs subdir", func(key string, k, val *yaml.Node) error {
						if key != "mode" {
							return p.unknownKey(k, "a !Tmpfs subdir", "mode")
						}
						var err error
						d.Mode, err = p.mode(val, "mode", 0o1777)
						return err
					})
					v.Subdirs = append(v.Subdirs, d)
					return err
				})
				// Parents first: lib before lib/tmp.
				sort.Slice(v.Subdirs, func(i, j int) bool { return v.Subdirs[i].Path < v.Subdirs[j].Path })
			case "files":
				err = p.mapping(val, func(sub string, sk, sv *yaml.Node) error {
					rel, err := p.relativePath(sk, "a files path")
					if err != nil {
						return err
					}
					text, _, err := p.optionalScalar(sv, "the text of "+sub)
					v.Files = append(v.Files, TmpfsFile{Path: rel, Content: text})
					return err
				})
				sort.Slice(v.Files, func(i, j int) bool { return v.Files[i].Path < v.Files[j].Path })
			default:
				err = p.unknownKey(k, "!Tmpfs", "size, mode, subdirs, files")
			}
			return err
		})
	case "!BindRW", "!BindRO":
		v.Kind = VolumeBind
		v.ReadOnly = n.Tag == "!BindRO"
		s, err := p.scalar(n, n.Tag)
		if err != nil {
			return v, err
		}
		if s == "/volumes" || strings.HasPrefix(s, "/volumes/") {
			return v, p.unsupported(n, n.Tag+" "+s+" (an external volume of vagga's settings)",
				"bind a directory of the project: "+n.Tag+" /work/...")
		}
		_, v.HostPath, err = p.hostPath(n, n.Tag)
		return v, err
	case "!Empty":
		v.Kind = VolumeEmpty
		if !isEmpty(n) {
			return v, p.errf(n, ErrInvalid, "!Empty takes no value", "write "+v.Path+": !Empty")
		}
		if v.Path == "/work" {
			return v, p.errf(n, ErrInvalid, "!Empty cannot hide /work itself", "hide a subdirectory: /work/src: !Empty")
		}
		return v, nil
	case "!Persistent":
		v.Kind, v.UID, v.GID = VolumePersistent, 0, 0
		if resolve(n).Kind == yaml.ScalarNode && !isEmpty(n) {
			v.Name = n.Value
		} else {
			err := p.structure(n, "!Persistent", func(key string, k, val *yaml.Node) error {
				var err error
				switch key {
				case "name":
					v.Name, err = p.scalar(val, "name")
				case "owner-uid":
					v.UID, err = p.boundedInt(val, key, 0, 1<<31-1)
				case "owner-gid":
					v.GID, err = p.boundedInt(val, key, 0, 1<<31-1)
				case "init-command":
					v.InitCommand, err = p.scalar(val, key)
				default:
					err = p.unknownKey(k, "!Persistent", "name, owner-uid, owner-gid, init-command")
				}
				return err
			})
			if err != nil {
				return v, err
			}
		}
		if err := checkName(v.Name); err != nil {
			return v, p.errf(n, ErrInvalid, fmt.Sprintf("!Persistent name %q: %v", v.Name, err), `write !Persistent {name: "postgres"}`)
		}
		return v, nil
	case "!CacheDir":
		v.Kind = VolumeCacheDir
		s, err := p.scalar(n, "!CacheDir")
		if err != nil {
			return v, err
		}
		c := path.Clean(s)
		if s == "" || path.IsAbs(s) || c == "." || c == ".." || strings.HasPrefix(c, "../") || strings.HasPrefix(c, ".") {
			return v, p.errf(n, ErrInvalid, fmt.Sprintf("!CacheDir %q must be a name (a relative path in the cache directory)", s), "write e.g. !CacheDir maven-cache")
		}
		v.Name = c
		return v, nil
	case "!Container":
		v.Kind = VolumeContainer
		var err error
		v.Container, err = p.scalar(n, "!Container")
		return v, err
	case "!VaggaBin":
		return v, p.unsupported(n, "volume !VaggaBin (vagga's own binaries)",
			"ovl has no /usr/lib/vagga to mount; bind what the command needs with !BindRO /work/...")
	}
	return v, p.errf(n, ErrInvalid, fmt.Sprintf("%q is not a vagga volume", n.Tag),
		"volumes are !Tmpfs, !Snapshot, !BindRW, !BindRO, !Empty, !Persistent, !CacheDir, !Container, !VaggaBin")
}

// size reads a byte count as vagga writes it: 100Mi, 1G, 512k, 4096.
func (p *parser) size(n *yaml.Node) (int64, error) {
	s, err := p.scalar(n, "size")
	if err != nil {
		return 0, err
	}
	v, err := ParseSize(s)
	if err != nil {
		return 0, p.errf(n, ErrInvalid, err.Error(), "write e.g. 100Mi, 1G or 4096")
	}
	return v, nil
}
