package vagga

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ovl-dev/ovl/internal/idmap"
)

// Defaults of vagga's container settings.
const (
	DefaultResolvConfPath = "/etc/resolv.conf"
	DefaultHostsFilePath  = "/etc/hosts"
)

func (p *parser) container(name string, k, v *yaml.Node) (*Container, error) {
	c := &Container{Name: name, Pos: p.pos(k), ResolvConfPath: DefaultResolvConfPath, HostsFilePath: DefaultHostsFilePath}
	if err := checkName(name); err != nil {
		return nil, p.errf(k, ErrInvalid, fmt.Sprintf("container name %q: %v", name, err), "")
	}
	what := fmt.Sprintf("container %q", name)
	err := p.structure(v, what, func(key string, kk, vv *yaml.Node) error {
		var err error
		switch key {
		case "setup":
			err = p.sequence(vv, func(item *yaml.Node) error {
				s, err := p.step(item)
				switch {
				case err != nil:
					return err
				case s.unsupported != nil:
					c.Unsupported = append(c.Unsupported, s.unsupported)
				default:
					c.Setup = append(c.Setup, s.step)
				}
				return nil
			})
		case "environ":
			c.Environ, err = p.environ(vv)
		case "environ-file":
			c.EnvironFile, err = p.containerPath(vv, "environ-file")
		case "volumes":
			c.Volumes, err = p.volumes(vv, &c.Unsupported)
		case "uids":
			c.UIDs, err = p.idRanges(vv, key)
		case "gids":
			c.GIDs, err = p.idRanges(vv, key)
		case "resolv-conf-path", "hosts-file-path":
			var s string
			if _, set, _ := p.optionalScalar(vv, key); set {
				s, err = p.containerPath(vv, key)
			}
			if key == "resolv-conf-path" {
				c.ResolvConfPath = s
			} else {
				c.HostsFilePath = s
			}
		case "auto-clean":
			c.AutoClean, err = p.boolean(vv, key)
		case "data-dirs":
			err = p.sequence(vv, func(item *yaml.Node) error {
				d, err := p.containerPath(item, "a data-dirs path")
				if err == nil && d == "/" {
					err = p.errf(item, ErrInvalid, "data-dirs: / would keep everything", "name the directories to keep")
				}
				c.DataDirs = append(c.DataDirs, d)
				return err
			})
		case "default-shell":
			c.DefaultShell, err = p.strings(vv, "an argument of default-shell")
			if err == nil && len(c.DefaultShell) == 0 {
				c.DefaultShell = nil
			}
		case "image-cache-url":
			c.Unsupported = append(c.Unsupported, p.unsupported(kk, "image-cache-url (fetching a prebuilt image)",
				"remove it: ovl builds the container from its setup steps"))
		default:
			err = p.unknownKey(kk, what, "setup, environ, environ-file, volumes, uids, gids, resolv-conf-path, hosts-file-path, auto-clean, data-dirs, default-shell, image-cache-url")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	for i, s := range c.Setup {
		if _, ok := s.(*ContainerStep); ok && i > 0 {
			return nil, &Error{Pos: s.Position(), Err: ErrInvalid,
				Msg:  fmt.Sprintf("container %q: !Container must be the first step", name),
				Hint: "build on one container: move !Container to the top of setup:"}
		}
	}
	return c, nil
}

// idRanges reads a container's uids or gids: a list of ranges
// "FIRST-LAST" or single ids.
func (p *parser) idRanges(n *yaml.Node, key string) ([]idmap.Range, error) {
	out := []idmap.Range{}
	err := p.sequence(n, func(item *yaml.Node) error {
		s, err := p.scalar(item, key)
		if err != nil {
			return err
		}
		r, err := idmap.ParseRange(s)
		if err != nil {
			return p.errf(item, ErrInvalid, fmt.Sprintf("%s: %v", key, err), "write ranges as in vagga, e.g. "+key+": [0-65535]")
		}
		out = append(out, r)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = p.errf(n, ErrInvalid, key+" is empty", "leave it out for the default, 0-65535")
	}
	return out, err
}

// checkName refuses names that cannot be a file name under .vagga/.
func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return fmt.Errorf("must be a plain file name, not starting with a dot")
	}
	return nil
}

// containerPath checks and cleans an absolute path inside the container.
func (p *parser) containerPath(n *yaml.Node, what string) (string, error) {
	s, err := p.scalar(n, what)
	if err != nil {
		return "", err
	}
	if !path.IsAbs(s) {
		return "", p.errf(n, ErrInvalid, fmt.Sprintf("%s %q is not absolute", what, s), "paths inside the container start with /")
	}
	return path.Clean(s), nil
}

// relativePath checks and cleans a path below some directory: not
// absolute, not leaving it.
func (p *parser) relativePath(n *yaml.Node, what string) (string, error) {
	s, err := p.scalar(n, what)
	if err != nil {
		return "", err
	}
	c := path.Clean(s)
	if path.IsAbs(s) || c == ".." || strings.HasPrefix(c, "../") || c == "." {
		return "", p.errf(n, ErrInvalid, fmt.Sprintf("%s %q must be a relative path below it", what, s), "write e.g. lib/tmp")
	}
	return c, nil
}

// isWorkPath reports whether s names the project as vagga writes it
// inside the container: /work or below.
func isWorkPath(s string) bool { return s == "/work" || strings.HasPrefix(s, "/work/") }

// hostPath resolves a project path as vagga writes it ("/work/x", or "x"
// relative to the project) to a host path inside the project directory.
func (p *parser) hostPath(n *yaml.Node, what string) (written, host string, err error) {
	s, err := p.scalar(n, what)
	if err != nil {
		return "", "", err
	}
	if slices.Contains(strings.Split(s, "/"), "..") {
		return "", "", p.errf(n, ErrInvalid, fmt.Sprintf("%s %q leaves the project directory", what, s), "give a path inside the project")
	}
	rel := s
	switch {
	case isWorkPath(s):
		rel = strings.TrimPrefix(strings.TrimPrefix(s, "/work"), "/")
	case path.IsAbs(s):
		return "", "", p.errf(n, ErrInvalid, fmt.Sprintf("%s %q is outside the project", what, s),
			"give a path in the project directory: /work/... or relative to vagga.yaml")
	}
	rel = path.Clean("/" + rel)[1:]
	if rel == "" {
		rel = "."
	}
	return s, filepath.Join(p.dir, filepath.FromSlash(rel)), nil
}
