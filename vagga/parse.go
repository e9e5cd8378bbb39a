package vagga

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// localMixins are the files vagga mixes into every project's config
// when they exist (vagga 0.8.1), in the order vagga reads them: a later
// one overrides an earlier one, vagga.yaml overrides them all. Each also
// marks a directory as a project.
var localMixins = []string{"vagga.local.yaml", ".vagga.local.yaml", ".vagga/local.yaml"}

// Find looks for the project dir is in, as vagga does: in dir and then
// each parent, the first directory with .vagga/vagga.yaml, vagga.yaml or
// a local mixin (vagga.local.yaml, .vagga.local.yaml, .vagga/local.yaml).
// It returns the config file of the project: .vagga/vagga.yaml or
// vagga.yaml, or, for a project marked by a local mixin alone, the path
// vagga.yaml would have (Load reads it as empty).
func Find(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		for _, name := range []string{".vagga/vagga.yaml", "vagga.yaml"} {
			if p := filepath.Join(d, name); isFile(p) {
				return p, nil
			}
		}
		for _, name := range localMixins {
			if isFile(filepath.Join(d, name)) {
				return filepath.Join(d, "vagga.yaml"), nil
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no vagga.yaml (nor .vagga/vagga.yaml, vagga.local.yaml) in %s or any parent directory", dir)
		}
		d = parent
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// projectDir is the project directory of the config file at abs: its
// directory, or for .vagga/vagga.yaml the one above .vagga.
func projectDir(abs string) string {
	dir := filepath.Dir(abs)
	if filepath.Base(dir) == ".vagga" {
		return filepath.Dir(dir)
	}
	return dir
}

// Load reads and checks the vagga.yaml at path with the mixins vagga
// merges into it: the project's local mixins, then the file's mixins:
// (each with its own mixins). vagga.yaml's containers and commands win
// over any mixin's, a later mixin's over an earlier one's. A mixin that
// is missing or does not parse is skipped with a warning, as vagga does.
// path may be missing when the project has a local mixin.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	dir := projectDir(abs)
	data, err := os.ReadFile(abs)
	var cfg *Config
	var mixins []mixinRef
	switch {
	case err == nil:
		if cfg, mixins, err = parseFile(data, abs, dir); err != nil {
			return nil, err
		}
	case errors.Is(err, fs.ErrNotExist) && hasLocalMixin(dir):
		cfg = newConfig(abs, dir)
	default:
		return nil, fmt.Errorf("read config: %w", err)
	}
	var local []mixinRef
	for _, name := range localMixins {
		if isFile(filepath.Join(dir, name)) {
			local = append(local, mixinRef{name: name})
		}
	}
	readMixins(cfg, filepath.Join(dir, "vagga.yaml"), local)
	readMixins(cfg, abs, mixins)
	if err := checkReferences(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func hasLocalMixin(dir string) bool {
	for _, name := range localMixins {
		if isFile(filepath.Join(dir, name)) {
			return true
		}
	}
	return false
}

// mixinRef is one entry of mixins:, with where it was written.
type mixinRef struct {
	name string
	pos  Pos
}

// readMixins merges the mixins of the file from into cfg, the last
// first, each adding only the containers and commands cfg does not
// have yet, then its own mixins (vagga's read_mixins).
func readMixins(cfg *Config, from string, mixins []mixinRef) {
	for i := len(mixins) - 1; i >= 0; i-- {
		m := mixins[i]
		path, err := mixinPath(from, m.name)
		var sub *Config
		var subMixins []mixinRef
		if err == nil {
			var data []byte
			if data, err = os.ReadFile(path); err == nil {
				sub, subMixins, err = parseFile(data, path, cfg.Dir)
			}
		}
		if err != nil {
			where := m.pos.String()
			if m.pos.File == "" {
				where = "local mixin"
			}
			slog.Warn("mixin skipped", "mixin", m.name, "from", where, "err", err)
			continue
		}
		cfg.Mixins = append(cfg.Mixins, path)
		for name, c := range sub.Containers {
			if _, ok := cfg.Containers[name]; !ok {
				cfg.Containers[name] = c
			}
		}
		for name, c := range sub.Commands {
			if _, ok := cfg.Commands[name]; !ok {
				cfg.Commands[name] = c
			}
		}
		readMixins(cfg, path, subMixins)
	}
}

// mixinPath resolves a mixin's name against the file that names it:
// only a relative path without .. is allowed, as in vagga.
func mixinPath(from, name string) (string, error) {
	if name == "" || filepath.IsAbs(name) {
		return "", fmt.Errorf("%q: only relative paths without .. can be mixed in", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." || part == "." {
			return "", fmt.Errorf("%q: only relative paths without .. can be mixed in", name)
		}
	}
	return filepath.Join(filepath.Dir(from), filepath.FromSlash(name)), nil
}

func newConfig(file, dir string) *Config {
	return &Config{File: file, Dir: dir, Containers: map[string]*Container{}, Commands: map[string]*Command{}}
}

// Parse reads a vagga.yaml from data, without mixins. file names it in
// errors; dir is the project directory, against which /work paths are
// resolved. Every step, volume and command is checked, container
// references are resolved and cycles refused. What ovl cannot do is
// recorded in the Unsupported of the container or command that uses it
// (Config.Check), so that it keeps only those from being built or run.
func Parse(data []byte, file, dir string) (*Config, error) {
	cfg, _, err := parseFile(data, file, dir)
	if err != nil {
		return nil, err
	}
	if err := checkReferences(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseFile parses one file: the config and the mixins it names.
func parseFile(data []byte, file, dir string) (*Config, []mixinRef, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, syntaxError(file, err)
	}
	p := &parser{file: file, dir: dir}
	cfg := newConfig(file, dir)
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return cfg, nil, nil // an empty file
	}
	if err := p.expand(doc.Content[0], file, 0); err != nil {
		return nil, nil, err
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode && !isEmpty(root) {
		return nil, nil, p.errf(root, ErrInvalid, "the top level must be a mapping with containers: and commands:", "")
	}
	var mixins []mixinRef
	err := p.structure(root, "vagga.yaml", func(key string, k, v *yaml.Node) error {
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
				c, err := p.command(name, k, v, true)
				if err != nil {
					return err
				}
				cfg.Commands[name] = c
				return nil
			})
		case "minimum-vagga":
			s, err := p.scalar(v, key)
			if err != nil {
				return err
			}
			if newer(s, ImplementsVagga) {
				return p.errf(v, ErrUnsupported, fmt.Sprintf("Please upgrade vagga to at least %q", s),
					"ovl reads vagga.yaml as vagga "+ImplementsVagga+" does")
			}
			return nil
		case "mixins":
			return p.sequence(v, func(item *yaml.Node) error {
				s, err := p.scalar(item, "a mixin")
				mixins = append(mixins, mixinRef{name: s, pos: p.pos(item)})
				return err
			})
		}
		return p.unknownKey(k, "vagga.yaml", "containers, commands, mixins, minimum-vagga")
	})
	if err != nil {
		return nil, nil, err
	}
	return cfg, mixins, nil
}

// ImplementsVagga is the vagga version whose configuration ovl reads: a
// minimum-vagga above it is refused, as vagga refuses it.
const ImplementsVagga = "v0.8.1"

var versionParts = regexp.MustCompile(`\d+`)

// newer reports whether the version a ("v0.8.2", "0.9.0-12-gabc")
// comes after b, comparing the numbers in order.
func newer(a, b string) bool {
	pa, pb := versionParts.FindAllString(a, -1), versionParts.FindAllString(b, -1)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x > y
		}
	}
	return false
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
	// files says which file a node was read from, where it is not file
	// (!*Include).
	files map[*yaml.Node]string
}

func (p *parser) pos(n *yaml.Node) Pos { return Pos{File: p.fileOf(n), Line: n.Line, Column: n.Column} }

func (p *parser) errf(n *yaml.Node, sentinel error, msg, hint string) error {
	return &Error{Pos: p.pos(n), Msg: msg, Err: sentinel, Hint: hint}
}

// unsupported is the error for something vagga documents that ovl does
// not do, at n: what, and what to do instead.
func (p *parser) unsupported(n *yaml.Node, what, hint string) error {
	return p.errf(n, ErrUnsupported, what+" is not supported by ovl", hint)
}

// unknownKey is the error for a key the schema of what does not have.
func (p *parser) unknownKey(k *yaml.Node, what, has string) error {
	return p.errf(k, ErrInvalid, fmt.Sprintf("%s: unknown key %q", what, k.Value), what+" has "+has)
}

// resolve follows YAML aliases (*name) to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isEmpty reports whether n stands for "nothing": a null, or a tag
// written with no value (`/tmp: !Tmpfs`), which vagga reads as the
// tag's defaults.
func isEmpty(n *yaml.Node) bool {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return false
	}
	if n.ShortTag() == "!!null" {
		return true
	}
	quoted := yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	return n.Value == "" && n.Style&quoted == 0 && strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!")
}

// structure calls fn for each key of the mapping n that describes a
// thing of the schema (a container, a command, a step's options), in
// file order, with merge keys expanded. As in vagga (its config library,
// quire), keys starting with "_" are left out (a place for anchors), and
// "_" in a key is the same as "-" (vagga's own names use "_"). An empty
// node is an empty mapping. what names the thing in errors.
func (p *parser) structure(n *yaml.Node, what string, fn func(key string, k, v *yaml.Node) error) error {
	seen := map[string]*yaml.Node{}
	return p.mapping(n, func(key string, k, v *yaml.Node) error {
		if strings.HasPrefix(key, "_") {
			return nil
		}
		norm := strings.ReplaceAll(key, "_", "-")
		if prev, dup := seen[norm]; dup {
			return p.errf(k, ErrInvalid, fmt.Sprintf("%s: %q is %q again (line %d)", what, key, prev.Value, prev.Line), "write it once")
		}
		seen[norm] = k
		return fn(norm, k, v)
	})
}

// mapping calls fn for each key of the mapping n, in file order, with YAML
// merge keys (<<: *base) expanded; keys written in n override merged ones.
// An empty node is an empty mapping.
func (p *parser) mapping(n *yaml.Node, fn func(key string, k, v *yaml.Node) error) error {
	n = resolve(n)
	if isEmpty(n) {
		return nil
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

// sequence calls fn for each item of the sequence n; an empty node is
// an empty list.
func (p *parser) sequence(n *yaml.Node, fn func(item *yaml.Node) error) error {
	n = resolve(n)
	if isEmpty(n) {
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

// optionalScalar returns a scalar's value, and false for a null.
func (p *parser) optionalScalar(n *yaml.Node, what string) (string, bool, error) {
	if resolve(n).ShortTag() == "!!null" {
		return "", false, nil
	}
	s, err := p.scalar(n, what)
	return s, err == nil, err
}

// boolean reads true/false (and YAML's other spellings).
func (p *parser) boolean(n *yaml.Node, what string) (bool, error) {
	s, err := p.scalar(n, what)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on", "y":
		return true, nil
	case "false", "no", "off", "n", "":
		return false, nil
	}
	return false, p.errf(n, ErrInvalid, fmt.Sprintf("%s %q is not true or false", what, s), "")
}

// integer reads a whole number as vagga writes them: 10, 0o755, 0x1f,
// 0b101, 1_000, and the units k, ki, M, Mi, G, Gi.
func (p *parser) integer(n *yaml.Node, what string) (int, error) {
	s, err := p.scalar(n, what)
	if err != nil {
		return 0, err
	}
	v, err := ParseNumber(s)
	if err != nil || v != int64(int(v)) {
		return 0, p.errf(n, ErrInvalid, fmt.Sprintf("%s %q is not a whole number", what, s), "write e.g. 1000, 0o755 or 100Mi")
	}
	return int(v), nil
}

// boundedInt is integer within [lo, hi].
func (p *parser) boundedInt(n *yaml.Node, what string, lo, hi int) (int, error) {
	v, err := p.integer(n, what)
	if err == nil && (v < lo || v > hi) {
		err = p.errf(n, ErrInvalid, fmt.Sprintf("%s %d is out of range (%d to %d)", what, v, lo, hi), "")
	}
	return v, err
}

// userKey reads one of the keys that say who a command or a !RunAs
// runs as: user-id, external-user-id, group-id (ids up to 2^30, as
// vagga), supplementary-gids.
func (p *parser) userKey(key string, n *yaml.Node, uid, externalUID, gid *int, groups *[]int) error {
	var err error
	switch key {
	case "user-id":
		*uid, err = p.boundedInt(n, key, 0, 1<<30)
	case "external-user-id":
		*externalUID, err = p.boundedInt(n, key, 0, 1<<30)
	case "group-id":
		*gid, err = p.boundedInt(n, key, 0, 1<<30)
	case "supplementary-gids":
		err = p.sequence(n, func(item *yaml.Node) error {
			g, err := p.boundedInt(item, "a supplementary gid", 0, 1<<30)
			*groups = append(*groups, g)
			return err
		})
	}
	return err
}

// mode reads a permission mode (at most 0o1777 here, as vagga's
// volumes; 0o777 for umask).
func (p *parser) mode(n *yaml.Node, what string, max int) (uint32, error) {
	v, err := p.boundedInt(n, what, 0, max)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Hint = "write it in octal: 0o755"
		}
	}
	return uint32(v), err
}

// strings returns a list of strings.
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
