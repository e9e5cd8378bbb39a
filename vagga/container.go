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

// ignoredContainerKeys are vagga container options that change nothing
// for ovl (auto-clean, files vagga generates).
var ignoredContainerKeys = map[string]bool{
	"auto-clean": true, "resolv-conf-path": true,
	"hosts-file-path": true, "data-dirs": true, "image-cache-url": true,
}

func (p *parser) container(name string, k, v *yaml.Node) (*Container, error) {
	c := &Container{Name: name, Pos: p.pos(k)}
	if err := checkName(name); err != nil {
		return nil, p.errf(k, ErrInvalid, fmt.Sprintf("container name %q: %v", name, err), "")
	}
	err := p.mapping(v, func(key string, kk, vv *yaml.Node) error {
		var err error
		switch key {
		case "setup":
			err = p.sequence(vv, func(item *yaml.Node) error {
				s, err := p.step(item)
				if err == nil {
					c.Setup = append(c.Setup, s)
				}
				return err
			})
		case "environ":
			c.Environ, err = p.environ(vv)
		case "volumes":
			c.Volumes, err = p.volumes(vv)
		case "uids":
			c.UIDs, err = p.idRanges(vv, key)
		case "gids":
			c.GIDs, err = p.idRanges(vv, key)
		case "environ-file":
			err = p.errf(kk, ErrUnsupported, "environ-file is not supported", "write the variables under environ:")
		default:
			if !ignoredContainerKeys[key] {
				err = p.errf(kk, ErrInvalid, fmt.Sprintf("container %q: unknown key %q", name, key), "a container has setup:, environ:, volumes:, uids: and gids:")
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	for i, s := range c.Setup {
		if _, ok := s.(*ContainerStep); ok && i > 0 {
			return nil, &Error{Pos: s.Position(), Err: ErrUnsupported,
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
	case s == "/work" || strings.HasPrefix(s, "/work/"):
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
