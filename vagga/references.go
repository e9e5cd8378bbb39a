package vagga

import (
	"fmt"
	"strings"
)

// checkReferences makes sure every container a step, volume or command
// names exists, every prerequisite and init-command is a command, and
// that containers built on containers form no loop.
func checkReferences(cfg *Config) error {
	for _, name := range cfg.ContainerNames() {
		c := cfg.Containers[name]
		for _, s := range c.Setup {
			var ref string
			switch s := s.(type) {
			case *ContainerStep:
				ref = s.Name
			case *BuildStep:
				ref = s.Container
			default:
				continue
			}
			if _, ok := cfg.Containers[ref]; !ok {
				return &Error{Pos: s.Position(), Err: ErrUnknownContainer,
					Msg:  fmt.Sprintf("container %q builds on %q, which is not defined", name, ref),
					Hint: "define it under containers: or fix the name"}
			}
		}
		if err := checkVolumes(cfg, c.Volumes); err != nil {
			return err
		}
	}
	for _, name := range cfg.CommandNames() {
		if err := checkCommand(cfg, cfg.Commands[name]); err != nil {
			return err
		}
	}
	// Depth-first walk over "needs" edges; a container met again on the
	// current path closes a loop.
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case done:
			return nil
		case onPath:
			loop := append(path[indexOf(path, name):], name)
			c := cfg.Containers[name]
			return &Error{Pos: c.Pos, Err: ErrCycle,
				Msg:  fmt.Sprintf("Container %q has cyclic dependency: %s", name, strings.Join(loop, " -> ")),
				Hint: "a container cannot be built on itself"}
		}
		state[name] = onPath
		path = append(path, name)
		for _, dep := range Dependencies(cfg.Containers[name]) {
			if err := visit(dep); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		return nil
	}
	for _, name := range cfg.ContainerNames() {
		if err := visit(name); err != nil {
			return err
		}
	}
	return nil
}

// checkCommand checks the references of command c and its children.
func checkCommand(cfg *Config, c *Command) error {
	if c.Kind == KindCommand {
		if _, ok := cfg.Containers[c.Container]; !ok {
			return &Error{Pos: c.Pos, Err: ErrUnknownContainer,
				Msg:  fmt.Sprintf("command %q runs in container %q, which is not defined", c.Name, c.Container),
				Hint: "define it under containers: or fix the name"}
		}
	}
	for _, pre := range c.Prerequisites {
		if _, ok := cfg.LookupCommand(pre); !ok {
			return &Error{Pos: c.Pos, Err: ErrInvalid,
				Msg:  fmt.Sprintf("command %q has prerequisite %q, which is not a command", c.Name, pre),
				Hint: "define it under commands: or fix the name"}
		}
	}
	if err := checkVolumes(cfg, c.Volumes); err != nil {
		return err
	}
	for _, n := range c.ChildNames() {
		if err := checkCommand(cfg, c.Children[n]); err != nil {
			return err
		}
	}
	return nil
}

func checkVolumes(cfg *Config, vols []Volume) error {
	for _, v := range vols {
		if v.Container != "" {
			if _, ok := cfg.Containers[v.Container]; !ok {
				return &Error{Pos: v.Pos, Err: ErrUnknownContainer,
					Msg:  fmt.Sprintf("volume %s takes container %q, which is not defined", v.Path, v.Container),
					Hint: "define it under containers: or fix the name"}
			}
		}
		if v.InitCommand != "" {
			if _, ok := cfg.LookupCommand(v.InitCommand); !ok {
				return &Error{Pos: v.Pos, Err: ErrInvalid,
					Msg:  fmt.Sprintf("volume %s has init-command %q, which is not a command", v.Path, v.InitCommand),
					Hint: "define it under commands: or fix the name"}
			}
		}
	}
	return nil
}

// Dependencies lists the containers c needs built before it, or before
// it runs: its parent (!Container), the containers of its !Build steps,
// and the sources of its snapshot and !Container volumes.
func Dependencies(c *Container) []string {
	var out []string
	add := func(name string) {
		if name != "" && indexOf(out, name) < 0 {
			out = append(out, name)
		}
	}
	add(c.Parent())
	for _, s := range c.Setup {
		if b, ok := s.(*BuildStep); ok {
			add(b.Container)
		}
	}
	for _, v := range c.Volumes {
		if v.Container != c.Name { // a snapshot of its own directory
			add(v.Container)
		}
	}
	return out
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
