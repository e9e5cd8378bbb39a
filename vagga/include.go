package vagga

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// What vagga's configuration library (quire) does to a file before it
// reads it (config.rst points to it for the format's basics): a node
// tagged !*Include FILE is the document of FILE (a path relative to the
// including file, without ..; anchors stay local to each file), and an
// item !*Unpack [[a, b], [c]] of a list is the items of those lists.

// expand replaces the !*Include and !*Unpack nodes below n, which was
// read from file, recording where each node of an included file comes
// from in p.files. depth bounds nested includes.
func (p *parser) expand(n *yaml.Node, file string, depth int) error {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.AliasNode {
		if p.files == nil {
			p.files = map[*yaml.Node]string{}
		}
		if _, seen := p.files[n]; !seen {
			p.files[n] = file
		}
	}
	if n.Tag == "!*Include" {
		if depth > 32 {
			return &Error{Pos: Pos{File: file, Line: n.Line}, Err: ErrInvalid, Msg: "!*Include nested too deep"}
		}
		name := n.Value
		if n.Kind != yaml.ScalarNode || name == "" || filepath.IsAbs(name) || strings.Contains("/"+name+"/", "/../") {
			return &Error{Pos: Pos{File: file, Line: n.Line}, Err: ErrInvalid,
				Msg: fmt.Sprintf("!*Include %q: only relative paths without parent directories can be included", name)}
		}
		path := filepath.Join(filepath.Dir(file), filepath.FromSlash(name))
		data, err := os.ReadFile(path)
		if err != nil {
			return &Error{Pos: Pos{File: file, Line: n.Line}, Err: ErrInvalid, Msg: fmt.Sprintf("!*Include: %v", err)}
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return syntaxError(path, err)
		}
		inc := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		if len(doc.Content) > 0 {
			inc = doc.Content[0]
		}
		if err := p.expand(inc, path, depth+1); err != nil {
			return err
		}
		*n = *inc
		p.files[n] = path
		return nil
	}
	for _, c := range n.Content {
		if err := p.expand(c, file, depth); err != nil {
			return err
		}
	}
	if n.Kind == yaml.SequenceNode {
		var items []*yaml.Node
		for _, c := range n.Content {
			if c.Tag != "!*Unpack" {
				items = append(items, c)
				continue
			}
			if c.Kind != yaml.SequenceNode {
				return &Error{Pos: Pos{File: p.fileOf(c), Line: c.Line}, Err: ErrInvalid, Msg: "!*Unpack needs a list of lists: !*Unpack [*a, *b]"}
			}
			for _, l := range c.Content {
				l = resolve(l)
				if l.Kind != yaml.SequenceNode {
					return &Error{Pos: Pos{File: p.fileOf(l), Line: l.Line}, Err: ErrInvalid, Msg: "!*Unpack needs a list of lists: !*Unpack [*a, *b]"}
				}
				items = append(items, l.Content...)
			}
		}
		n.Content = items
	}
	return nil
}

// fileOf is the file node n was read from.
func (p *parser) fileOf(n *yaml.Node) string {
	if f, ok := p.files[n]; ok {
		return f
	}
	return p.file
}
