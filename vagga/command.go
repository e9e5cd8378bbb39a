package vagga

import (
	"fmt"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// commonKeys are the keys every command kind has.
const commonKeys = "description, banner, banner-delay, epilog, aliases, group, prerequisites, options, expect-inotify-limit, symlink-name, tags, isolate-network, pass-tcp-socket"

// runKeys are the keys of a !Command.
const runKeys = "container, run, environ, volumes, write-mode, work-dir, accepts-arguments, user-id, external-user-id, group-id, supplementary-gids, pid1mode"

// command converts one command; top is false for a child of a
// !Supervise.
func (p *parser) command(name string, k, n *yaml.Node, top bool) (*Command, error) {
	n = resolve(n)
	if err := checkName(name); err != nil {
		return nil, p.errf(k, ErrInvalid, fmt.Sprintf("command name %q: %v", name, err), "")
	}
	c := &Command{Name: name, Pos: p.pos(k), Kind: n.Tag, WriteMode: ReadOnly, ExternalUserID: -1,
		Mode: StopOnFailure, KillUnresponsiveAfter: 2}
	what := fmt.Sprintf("command %q", name)
	switch {
	case n.Tag == "!CapsuleCommand" && top:
		c.Unsupported = append(c.Unsupported, p.unsupported(n, what+": !CapsuleCommand (vagga's capsule downloads its own Alpine tools)",
			"write it as a !Command in a container of this file"))
		return c, nil
	case n.Tag == "!BridgeCommand" && !top:
		c.Unsupported = append(c.Unsupported, p.unsupported(n, what+": !BridgeCommand (vagga's network testing)",
			"run it as a !Command child"))
		return c, nil
	case n.Tag == KindSupervise && top:
	case n.Tag != KindCommand:
		hint := "write the command as !Command {container: NAME, run: ...}"
		if top {
			hint += " or !Supervise {children: ...}"
		}
		return nil, p.errf(n, ErrInvalid, fmt.Sprintf("%s: %q is not a vagga command", what, n.Tag), hint)
	}
	keys := commonKeys + ", " + runKeys
	if c.Kind == KindSupervise {
		keys = commonKeys + ", mode, children, kill-unresponsive-after"
	}
	var haveRun bool
	err := p.structure(n, what, func(key string, kk, v *yaml.Node) error {
		var err error
		switch key {
		// Common to both kinds.
		case "description":
			c.Description, err = p.scalar(v, key)
		case "banner":
			c.Banner, err = p.scalar(v, key)
		case "banner-delay":
			c.BannerDelay, err = p.boundedInt(v, key, 0, 1<<30)
		case "epilog":
			c.Epilog, err = p.scalar(v, key)
		case "aliases":
			c.Aliases, err = p.strings(v, "an alias")
		case "group":
			c.Group, err = p.scalar(v, key)
		case "prerequisites":
			c.Prerequisites, err = p.strings(v, "a prerequisite")
		case "tags":
			c.Tags, err = p.strings(v, "a tag")
		case "symlink-name":
			c.SymlinkName, err = p.scalar(v, key)
		case "expect-inotify-limit":
			c.InotifyLimit, err = p.boundedInt(v, key, 0, 1<<31-1)
		case "options":
			if !top {
				return p.unknownKey(kk, what+" (a child of !Supervise)", keys)
			}
			if c.Options, err = p.scalar(v, key); err == nil {
				if _, derr := ParseDocopt(c.Options); derr != nil {
					err = p.errf(v, ErrInvalid, fmt.Sprintf("Error parsing `options` in command %q: %v", name, derr),
						"write a docopt text: Usage: vagga "+name+" [options] ...")
				}
			}
		case "isolate-network":
			c.IsolateNetwork, err = p.boolean(v, key)
		case "pass-tcp-socket":
			c.Unsupported = append(c.Unsupported, p.unsupported(kk, what+": pass-tcp-socket",
				"let the command listen on the port itself"))
		case "network":
			if top {
				return p.unknownKey(kk, what, keys)
			}
			c.Unsupported = append(c.Unsupported, p.unsupported(kk, what+": network (vagga's network testing)",
				"remove it: ovl's commands share the host's network"))

		// !Supervise.
		case "mode", "children", "kill-unresponsive-after":
			if c.Kind != KindSupervise {
				return p.unknownKey(kk, what, keys)
			}
			switch key {
			case "mode":
				c.Mode, err = p.scalar(v, key)
				if err == nil && c.Mode != StopOnFailure && c.Mode != WaitAllSuccessful {
					err = p.errf(v, ErrInvalid, fmt.Sprintf("mode %q is not known", c.Mode), "use stop-on-failure or wait-all-successful")
				}
			case "children":
				c.Children = map[string]*Command{}
				err = p.mapping(v, func(cn string, ck, cv *yaml.Node) error {
					child, err := p.command(cn, ck, cv, false)
					if err == nil {
						c.Children[cn] = child
						c.Unsupported = append(c.Unsupported, child.Unsupported...)
					}
					return err
				})
			case "kill-unresponsive-after":
				c.KillUnresponsiveAfter, err = p.boundedInt(v, key, 1, 86400)
			}

		// !Command.
		default:
			if c.Kind == KindSupervise {
				return p.unknownKey(kk, what+" (!Supervise)", keys)
			}
			err = p.runKey(c, key, kk, v, &haveRun)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.Kind == KindSupervise {
		if len(c.Children) == 0 {
			return nil, p.errf(n, ErrInvalid, fmt.Sprintf("%s has no children:", what), "name the processes to run under children:")
		}
		return c, nil
	}
	if c.Container == "" {
		return nil, p.errf(n, ErrInvalid, fmt.Sprintf("%s has no container:", what), "name the container it runs in")
	}
	if !haveRun {
		return nil, p.errf(n, ErrInvalid, fmt.Sprintf("%s has no run:", what), "write run: \"make test\" or run: [make, test]")
	}
	return c, nil
}

// runKey reads one key of a !Command.
func (p *parser) runKey(c *Command, key string, kk, v *yaml.Node, haveRun *bool) error {
	what := fmt.Sprintf("command %q", c.Name)
	var err error
	switch key {
	case "container":
		c.Container, err = p.scalar(v, key)
	case "run":
		*haveRun = true
		v = resolve(v)
		if v.Kind == yaml.ScalarNode {
			c.Script = v.Value
		} else {
			c.Run, err = p.strings(v, "an argument of run")
			if err == nil && len(c.Run) == 0 {
				err = p.errf(v, ErrInvalid, "`run` must contain at least a command to run", "")
			}
		}
	case "environ":
		c.Environ, err = p.environ(v)
	case "volumes":
		c.Volumes, err = p.volumes(v, &c.Unsupported)
	case "write-mode":
		var s string
		s, err = p.scalar(v, key)
		switch WriteMode(s) {
		case ReadOnly, TransientCopy:
			c.WriteMode = WriteMode(s)
		default:
			err = p.errf(v, ErrInvalid, fmt.Sprintf("write-mode %q is not known", s), "use read-only or transient-hard-link-copy")
		}
	case "work-dir":
		var s string
		s, err = p.scalar(v, key)
		c.WorkDir = path.Clean(strings.TrimPrefix(strings.TrimPrefix(s, "/work"), "/"))
		if c.WorkDir == "" {
			c.WorkDir = "."
		}
		if (path.IsAbs(s) && !isWorkPath(s)) || c.WorkDir == ".." || strings.HasPrefix(c.WorkDir, "../") {
			err = p.errf(v, ErrInvalid, fmt.Sprintf("work-dir %q is outside /work", s), "give a directory of the project, relative to it")
		}
	case "accepts-arguments":
		var b bool
		b, err = p.boolean(v, key)
		c.AcceptsArguments = &b
	case "user-id", "external-user-id", "group-id", "supplementary-gids":
		err = p.userKey(key, v, &c.UserID, &c.ExternalUserID, &c.GroupID, &c.SupplementaryGIDs)
	case "pid1mode":
		c.Pid1Mode, err = p.scalar(v, key)
		switch c.Pid1Mode {
		case "wait", "wait-all-children", "exec":
		default:
			err = p.errf(v, ErrInvalid, fmt.Sprintf("pid1mode %q is not known", c.Pid1Mode), "use wait, wait-all-children or exec")
		}
	default:
		err = p.unknownKey(kk, what, commonKeys+", "+runKeys)
	}
	return err
}
