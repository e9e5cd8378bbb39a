package vagga

import (
	"fmt"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

func (p *parser) command(name string, k, n *yaml.Node) (*Command, error) {
	n = resolve(n)
	if err := checkName(name); err != nil {
		return nil, p.errf(k, ErrInvalid, fmt.Sprintf("command name %q: %v", name, err), "")
	}
	if n.Tag != "!Command" {
		hint := "write the command as !Command {container: NAME, run: ...}"
		if n.Tag == "!Supervise" {
			hint = "run each process with its own !Command"
		}
		return nil, p.errf(n, ErrUnsupported, fmt.Sprintf("command %q: %s is not supported", name, n.Tag), hint)
	}
	c := &Command{Name: name, Pos: p.pos(k), WriteMode: ReadOnly}
	err := p.mapping(n, func(key string, kk, v *yaml.Node) error {
		var err error
		switch key {
		case "container":
			c.Container, err = p.scalar(v, "container")
		case "run":
			v = resolve(v)
			if v.Kind == yaml.ScalarNode {
				c.Run = []string{"/bin/sh", "-c", v.Value}
			} else {
				c.Run, err = p.strings(v, "an argument of run")
			}
		case "environ":
			c.Environ, err = p.environ(v)
		case "volumes":
			c.Volumes, err = p.volumes(v)
		case "write-mode":
			var s string
			s, err = p.scalar(v, "write-mode")
			switch WriteMode(s) {
			case ReadOnly, TransientCopy:
				c.WriteMode = WriteMode(s)
			default:
				err = p.errf(v, ErrInvalid, fmt.Sprintf("write-mode %q is not known", s), "use read-only or transient-hard-link-copy")
			}
		case "work-dir":
			var s string
			s, err = p.scalar(v, "work-dir")
			c.WorkDir = path.Clean(strings.TrimPrefix(s, "/work/"))
			if path.IsAbs(c.WorkDir) || strings.HasPrefix(c.WorkDir, "..") {
				err = p.errf(v, ErrInvalid, fmt.Sprintf("work-dir %q is outside /work", s), "give a directory of the project")
			}
		case "description", "prerequisites", "options", "accepts-arguments", "banner", "banner-delay",
			"epilog", "group", "aliases", "expect-inotify-limit", "pid1mode", "isolate-network":
			if key == "description" {
				c.Description, err = p.scalar(v, "description")
			}
		default:
			err = p.errf(kk, ErrUnsupported, fmt.Sprintf("command %q: option %q is not supported", name, key),
				"a command has container, run, environ, volumes, write-mode, work-dir")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.Container == "" {
		return nil, p.errf(n, ErrInvalid, fmt.Sprintf("command %q has no container:", name), "name the container it runs in")
	}
	if len(c.Run) == 0 {
		return nil, p.errf(n, ErrInvalid, fmt.Sprintf("command %q has no run:", name), "write run: \"make test\" or run: [make, test]")
	}
	return c, nil
}
