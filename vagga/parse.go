package vagga

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Load reads and checks the vagga.yaml at path. The project directory is
// the file's directory.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, abs, filepath.Dir(abs))
}

// Find looks for vagga.yaml in dir and its parents, as vagga does, and
// returns its path.
func Find(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(d, "vagga.yaml")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no vagga.yaml in %s or any parent directory (run ovl in a project, or give --config)", dir)
		}
		d = parent
	}
}

// Parse reads a vagga.yaml from data. file names it in errors; dir is the
// project directory, against which /work paths are resolved. Every step,
// volume and command is checked, container references are resolved and
// cycles refused, so a Config that parses can be built.
func Parse(data []byte, file, dir string) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(file, err)
	}
	p := &parser{file: file, dir: dir}
	cfg := &Config{File: file, Dir: dir, Containers: map[string]*Container{}, Commands: map[string]*Command{}}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return cfg, nil // an empty file
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		return nil, p.errf(root, ErrInvalid, "the top level must be a mapping with containers: and commands:", "")
	}
	err := p.mapping(root, func(key string, k, v *yaml.Node) error {
		switch key {
		case "containers":
			return p.mapping(v, func(name string, k, v *yaml.Node) error {
				c, err := p.container(name, k, v)
				if err != nil {
					return err
				}
				cfg.Containers[name] = c
				return nil
			})
		case "commands":
			return p.mapping(v, func(name string, k, v *yaml.Node) error {
				c, err := p.command(name, k, v)
				if err != nil {
					return err
				}
				cfg.Commands[name] = c
				return nil
			})
		case "minimum-vagga", "mixins", "_defaults":
			return nil // version pins and vagga's own extensions: no effect on ovl
		default:
			return p.errf(k, ErrInvalid, fmt.Sprintf("unknown top-level key %q", key), "vagga.yaml has containers: and commands:")
		}
	})
	if err != nil {
		return nil, err
	}
	if err := checkReferences(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML error into "file:line: invalid YAML: ...".
func syntaxError(file string, err error) error {
	msg := err.Error()
	pos := Pos{File: file}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		pos.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	return &Error{Pos: pos, Msg: "invalid YAML: " + msg, Err: ErrSyntax}
}

// parser carries what every node conversion needs.
type parser struct {
	file, dir string
}

func (p *parser) pos(n *yaml.Node) Pos { return Pos{File: p.file, Line: n.Line, Column: n.Column} }

func (p *parser) errf(n *yaml.Node, sentinel error, msg, hint string) error {
	return &Error{Pos: p.pos(n), Msg: msg, Err: sentinel, Hint: hint}
}

// resolve follows YAML aliases (*name) to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// mapping calls fn for each key of the mapping n, in file order, with YAML
// merge keys (<<: *base) expanded; keys written in n override merged ones.
func (p *parser) mapping(n *yaml.Node, fn func(key string, k, v *yaml.Node) error) error {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // "containers:" with nothing under it
	}
	if n.Kind != yaml.MappingNode {
		return p.errf(n, ErrInvalid, "expected a mapping", "")
	}
	type kv struct{ k, v *yaml.Node }
	var order []string
	entries := map[string]kv{}
	add := func(k, v *yaml.Node, override bool) {
		if _, seen := entries[k.Value]; seen && !override {
			return
		}
		if _, seen := entries[k.Value]; !seen {
			order = append(order, k.Value)
		}
		entries[k.Value] = kv{k, v}
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0) {
			merges = append(merges, resolve(v))
			continue
		}
		if prev, dup := entries[k.Value]; dup {
			return p.errf(k, ErrSyntax, fmt.Sprintf("invalid YAML: mapping key %q already defined at line %d", k.Value, prev.k.Line), "")
		}
		add(k, v, true)
	}
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			src = resolve(src)
			if src.Kind != yaml.MappingNode {
				return p.errf(src, ErrInvalid, "a merge key (<<) needs a mapping", "")
			}
			for i := 0; i+1 < len(src.Content); i += 2 {
				add(src.Content[i], src.Content[i+1], false)
			}
		}
	}
	for _, key := range order {
		e := entries[key]
		if err := fn(key, e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// sequence calls fn for each item of the sequence n; a null is empty.
func (p *parser) sequence(n *yaml.Node, fn func(item *yaml.Node) error) error {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return p.errf(n, ErrInvalid, "expected a list", "")
	}
	for _, item := range n.Content {
		if err := fn(resolve(item)); err != nil {
			return err
		}
	}
	return nil
}

// scalar returns the string value of a scalar node.
func (p *parser) scalar(n *yaml.Node, what string) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return "", p.errf(n, ErrInvalid, what+" must be a single value", "")
	}
	return n.Value, nil
}

// integer returns the value of an integer scalar.
func (p *parser) integer(n *yaml.Node, what string) (int, error) {
	s, err := p.scalar(n, what)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, p.errf(n, ErrInvalid, fmt.Sprintf("%s %q is not a whole number", what, s), "")
	}
	return v, nil
}

// strings returns a list of strings; a single scalar is a list of one
// only if single is true.
func (p *parser) strings(n *yaml.Node, what string) ([]string, error) {
	var out []string
	err := p.sequence(n, func(item *yaml.Node) error {
		s, err := p.scalar(item, what)
		out = append(out, s)
		return err
	})
	return out, err
}

// environ reads a NAME: value mapping, sorted by name.
func (p *parser) environ(n *yaml.Node) ([]EnvVar, error) {
	var out []EnvVar
	err := p.mapping(n, func(key string, k, v *yaml.Node) error {
		s, err := p.scalar(v, "the value of "+key)
		out = append(out, EnvVar{Name: key, Value: s})
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}
