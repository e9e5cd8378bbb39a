package vagga

import (
	"fmt"
	"strings"
)

// checkReferences makes sure every container a step, volume or command
// names exists, and that containers built on containers form no loop.
func checkReferences(cfg *Config) error {
	for _, name := range cfg.ContainerNames() {
		c := cfg.Containers[name]
		for _, s := range c.Setup {
			if cs, ok := s.(*ContainerStep); ok {
				if _, ok := cfg.Containers[cs.Name]; !ok {
					return &Error{Pos: cs.Pos, Err: ErrUnknownContainer,
						Msg:  fmt.Sprintf("container %q builds on %q, which is not defined", name, cs.Name),
						Hint: "define it under containers: or fix the name"}
				}
			}
		}
		if err := checkVolumes(cfg, c.Volumes); err != nil {
			return err
		}
	}
	for _, name := range cfg.CommandNames() {
		c := cfg.Commands[name]
		if _, ok := cfg.Containers[c.Container]; !ok {
			return &Error{Pos: c.Pos, Err: ErrUnknownContainer,
				Msg:  fmt.Sprintf("command %q runs in container %q, which is not defined", name, c.Container),
				Hint: "define it under containers: or fix the name"}
		}
		if err := checkVolumes(cfg, c.Volumes); err != nil {
			return err
		}
	}
	// Depth-first walk over "builds on" edges; a container met again on
	// the current path closes a loop.
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

func checkVolumes(cfg *Config, vols []Volume) error {
	for _, v := range vols {
		if v.Container == "" {
			continue
		}
		if _, ok := cfg.Containers[v.Container]; !ok {
			return &Error{Pos: v.Pos, Err: ErrUnknownContainer,
				Msg:  fmt.Sprintf("snapshot of %s takes container %q, which is not defined", v.Path, v.Container),
				Hint: "define it under containers: or fix the name"}
		}
	}
	return nil
}

// Dependencies lists the containers c needs built before it: its parent
// (!Container) and the sources of its snapshot volumes.
func Dependencies(c *Container) []string {
	var out []string
	if p := c.Parent(); p != "" {
		out = append(out, p)
	}
	for _, v := range c.Volumes {
		if v.Container != "" && v.Container != c.Name {
			out = append(out, v.Container)
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
	return 0
}
