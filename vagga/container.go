package vagga

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ignoredContainerKeys are vagga container options that change nothing
// for ovl (user id ranges, auto-clean, files vagga generates).
var ignoredContainerKeys = map[string]bool{
	"uids": true, "gids": true, "auto-clean": true, "resolv-conf-path": true,
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
		case "environ-file":
			err = p.errf(kk, ErrUnsupported, "environ-file is not supported", "write the variables under environ:")
		default:
			if !ignoredContainerKeys[key] {
				err = p.errf(kk, ErrInvalid, fmt.Sprintf("container %q: unknown key %q", name, key), "a container has setup:, environ: and volumes:")
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
