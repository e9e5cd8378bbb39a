package vagga

// A docopt (http://docopt.org) parser of ovl's own, for vagga's options:
// of a command: the usage patterns and option descriptions, matched
// against the command line the way docopt matches them, and turned into
// vagga's VAGGAOPT_* and VAGGACLI_* variables.
//
// What it knows: one "usage:" section (each line starts with the program
// name; lines are alternatives), commands, <arguments> and ARGUMENTS,
// -s and --long options (-abc stacked, -ofile and --opt=value), [optional],
// (required), a|b, "...", the [options] shortcut, "--" and "-"; option
// descriptions in every section whose title has "options:" (two spaces
// before the description, [default: x]). Long options may be shortened
// to an unambiguous prefix on the command line, as docopt allows.

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"
)

// ErrDocoptHelp is what Docopt.Parse returns for -h or --help: the
// caller prints Docopt.Doc and exits 0.
var ErrDocoptHelp = errors.New("help asked for")

// DocoptError is a command line the usage does not match: print it and
// Usage, exit 121 (vagga's status for it).
type DocoptError struct{ Msg string }

func (e *DocoptError) Error() string { return e.Msg }

// Docopt is a parsed docopt text.
type Docopt struct {
	// Doc is the whole text (printed for --help); Usage its usage section.
	Doc, Usage string
	options    []*dOption
	pattern    dPattern
}

// dOption is an option as described or used.
type dOption struct {
	short, long string
	argcount    int  // 0 or 1
	value       any  // default: nil, false, a string
	repeated    bool // "..." in its description: a count or a list
}

func (o *dOption) name() string {
	if o.long != "" {
		return o.long
	}
	return o.short
}

// Leaf kinds of a pattern.
const (
	leafArgument = iota
	leafCommand
	leafOption
)

// dPattern is a node of a usage pattern.
type dPattern struct {
	kind     string // "leaf", "required", "optional", "either", "oneormore", "shortcut"
	leaf     *dLeaf
	children []*dPattern
}

// dLeaf is a leaf of a pattern, or an item of a parsed command line.
type dLeaf struct {
	kind  int
	name  string
	value any // nil, bool, int (count), string, []string
	opt   *dOption
}

func (l *dLeaf) copy() *dLeaf {
	c := *l
	if s, ok := l.value.([]string); ok {
		c.value = append([]string(nil), s...)
	}
	return &c
}

var (
	usageSection   = regexp.MustCompile(`(?im)^([^\n]*usage:[^\n]*\n?(?:[ \t].*?(?:\n|$))*)`)
	optionsSection = regexp.MustCompile(`(?im)^([^\n]*options:[^\n]*\n?(?:[ \t].*?(?:\n|$))*)`)
	optionStart    = regexp.MustCompile(`\n[ \t]*(-\S+?)`)
	defaultValue   = regexp.MustCompile(`(?i)\[default: (.*)\]`)
	patternTokens  = regexp.MustCompile(`([\[\]\(\)\|]|\.\.\.)`)
)

// ParseDocopt parses a docopt text.
func ParseDocopt(doc string) (*Docopt, error) {
	usages := usageSection.FindAllString(doc, -1)
	switch len(usages) {
	case 0:
		return nil, errors.New(`"usage:" (case-insensitive) not found`)
	case 1:
	default:
		return nil, errors.New(`more than one "usage:" (case-insensitive)`)
	}
	d := &Docopt{Doc: strings.Trim(doc, "\n"), Usage: strings.TrimSpace(usages[0])}
	d.options = parseOptionDescriptions(doc)
	_, rest, _ := strings.Cut(usages[0], ":")
	words := strings.Fields(rest)
	if len(words) == 0 {
		return nil, errors.New("the usage has no pattern")
	}
	// Each line starts with the program name: the lines are
	// alternatives.
	formal := []string{"("}
	for _, w := range words[1:] {
		if w == words[0] {
			formal = append(formal, ")", "|", "(")
		} else {
			formal = append(formal, w)
		}
	}
	formal = append(formal, ")")
	tokens := strings.Fields(patternTokens.ReplaceAllString(strings.Join(formal, " "), " $1 "))
	ts := &dTokens{list: tokens}
	children, err := d.parseExpr(ts)
	if err != nil {
		return nil, err
	}
	if ts.current() != "" {
		return nil, fmt.Errorf("unexpected ending: %q", strings.Join(ts.list[ts.pos:], " "))
	}
	d.pattern = dPattern{kind: "required", children: children}
	// [options] stands for the described options the pattern does not
	// name.
	named := map[string]bool{}
	for _, l := range d.pattern.leaves() {
		if l.kind == leafOption {
			named[l.name] = true
		}
	}
	d.pattern.walk(func(p *dPattern) {
		if p.kind != "shortcut" {
			return
		}
		p.children = nil
		for _, o := range d.options {
			if !named[o.name()] {
				p.children = append(p.children, &dPattern{kind: "leaf", leaf: &dLeaf{kind: leafOption, name: o.name(), value: o.value, opt: o}})
			}
		}
	})
	// An option described with "..." may be given any number of times.
	d.pattern.walk(func(p *dPattern) {
		if p.kind == "oneormore" {
			return
		}
		for i, c := range p.children {
			if c.kind == "leaf" && c.leaf.kind == leafOption && c.leaf.opt.repeated {
				p.children[i] = &dPattern{kind: "oneormore", children: []*dPattern{c}}
			}
		}
	})
	d.fixRepeating()
	return d, nil
}

// parseOptionDescriptions reads every "-x, --xx ARG  text [default: v]"
// line of the sections titled "...options:".
func parseOptionDescriptions(doc string) []*dOption {
	var out []*dOption
	for _, sec := range optionsSection.FindAllString(doc, -1) {
		_, body, _ := strings.Cut(sec, ":")
		body = "\n" + body
		idx := optionStart.FindAllStringSubmatchIndex(body, -1)
		for i, m := range idx {
			end := len(body)
			if i+1 < len(idx) {
				end = idx[i+1][0]
			}
			text := strings.TrimSpace(body[m[2]:end])
			opts, desc, _ := strings.Cut(text, "  ")
			opts = strings.NewReplacer(",", " ", "=", " ").Replace(opts)
			o := &dOption{value: false}
			for _, s := range strings.Fields(opts) {
				switch {
				case s == "...":
					o.repeated = true
				case strings.HasPrefix(s, "--"):
					o.long = s
				case strings.HasPrefix(s, "-"):
					o.short = s
				case strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") || isUpperWord(s):
					o.argcount = 1
				}
			}
			if o.argcount == 1 {
				o.value = nil
				if m := defaultValue.FindStringSubmatch(desc); m != nil {
					o.value = m[1]
				}
			}
			out = append(out, o)
		}
	}
	return out
}

// dTokens is a token stream of a pattern or a command line.
type dTokens struct {
	list []string
	pos  int
	argv bool // a command line: errors are the user's
}

func (t *dTokens) current() string {
	if t.pos < len(t.list) {
		return t.list[t.pos]
	}
	return ""
}

func (t *dTokens) atEnd() bool { return t.pos >= len(t.list) }

func (t *dTokens) move() string {
	s := t.current()
	t.pos++
	return s
}

func (t *dTokens) errf(format string, a ...any) error {
	if t.argv {
		return &DocoptError{Msg: fmt.Sprintf(format, a...)}
	}
	return fmt.Errorf(format, a...)
}

func (d *Docopt) parseExpr(ts *dTokens) ([]*dPattern, error) {
	seq, err := d.parseSeq(ts)
	if err != nil || ts.current() != "|" {
		return seq, err
	}
	either := []*dPattern{wrapRequired(seq)}
	for ts.current() == "|" {
		ts.move()
		seq, err := d.parseSeq(ts)
		if err != nil {
			return nil, err
		}
		either = append(either, wrapRequired(seq))
	}
	return []*dPattern{{kind: "either", children: either}}, nil
}

func wrapRequired(seq []*dPattern) *dPattern {
	if len(seq) == 1 {
		return seq[0]
	}
	return &dPattern{kind: "required", children: seq}
}

func (d *Docopt) parseSeq(ts *dTokens) ([]*dPattern, error) {
	var out []*dPattern
	for !ts.atEnd() && ts.current() != "]" && ts.current() != ")" && ts.current() != "|" {
		atom, err := d.parseAtom(ts)
		if err != nil {
			return nil, err
		}
		if ts.current() == "..." {
			atom = []*dPattern{{kind: "oneormore", children: atom}}
			ts.move()
		}
		out = append(out, atom...)
	}
	return out, nil
}

func (d *Docopt) parseAtom(ts *dTokens) ([]*dPattern, error) {
	tok := ts.current()
	switch {
	case tok == "(" || tok == "[":
		ts.move()
		closing, kind := ")", "required"
		if tok == "[" {
			closing, kind = "]", "optional"
		}
		children, err := d.parseExpr(ts)
		if err != nil {
			return nil, err
		}
		if ts.move() != closing {
			return nil, fmt.Errorf("unmatched %q", tok)
		}
		return []*dPattern{{kind: kind, children: children}}, nil
	case tok == "options":
		ts.move()
		return []*dPattern{{kind: "shortcut"}}, nil
	case strings.HasPrefix(tok, "--") && tok != "--":
		return d.leaves(d.parseLong(ts))
	case strings.HasPrefix(tok, "-") && tok != "-" && tok != "--":
		return d.leaves(d.parseShorts(ts))
	case strings.HasPrefix(tok, "<") && strings.HasSuffix(tok, ">") || isUpperWord(tok):
		ts.move()
		return []*dPattern{{kind: "leaf", leaf: &dLeaf{kind: leafArgument, name: tok}}}, nil
	}
	ts.move()
	return []*dPattern{{kind: "leaf", leaf: &dLeaf{kind: leafCommand, name: tok, value: false}}}, nil
}

func (d *Docopt) leaves(items []*dLeaf, err error) ([]*dPattern, error) {
	var out []*dPattern
	for _, l := range items {
		out = append(out, &dPattern{kind: "leaf", leaf: l})
	}
	return out, err
}

func isUpperWord(s string) bool {
	return s != "" && strings.ToUpper(s) == s && strings.ContainsAny(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

// parseLong reads a --long option (of the pattern or the command line).
func (d *Docopt) parseLong(ts *dTokens) ([]*dLeaf, error) {
	long, value, hasValue := strings.Cut(ts.move(), "=")
	var similar []*dOption
	for _, o := range d.options {
		if o.long == long {
			similar = append(similar, o)
		}
	}
	if ts.argv && len(similar) == 0 {
		for _, o := range d.options {
			if o.long != "" && strings.HasPrefix(o.long, long) {
				similar = append(similar, o)
			}
		}
	}
	var o *dOption
	switch {
	case len(similar) > 1:
		names := make([]string, len(similar))
		for i, s := range similar {
			names[i] = s.long
		}
		return nil, ts.errf("%s is not a unique prefix: %s?", long, strings.Join(names, ", "))
	case len(similar) == 0:
		if ts.argv {
			return nil, ts.errf("Unknown flag: '%s'", long)
		}
		o = &dOption{long: long, value: false}
		if hasValue {
			o.argcount, o.value = 1, nil
		}
		d.options = append(d.options, o)
	default:
		o = similar[0]
		if o.argcount == 0 && hasValue {
			return nil, ts.errf("%s must not have an argument", o.long)
		}
		if o.argcount == 1 && !hasValue {
			if ts.atEnd() || ts.current() == "--" {
				return nil, ts.errf("%s requires argument", o.long)
			}
			value, hasValue = ts.move(), true
		}
	}
	l := &dLeaf{kind: leafOption, name: o.name(), value: o.value, opt: o}
	if ts.argv {
		l.value = true
		if o.argcount == 1 {
			l.value = value
		}
	}
	return []*dLeaf{l}, nil
}

// parseShorts reads -abc: one or more short options, the last of which
// may take the rest of the word or the next word as its argument.
func (d *Docopt) parseShorts(ts *dTokens) ([]*dLeaf, error) {
	left := strings.TrimPrefix(ts.move(), "-")
	var out []*dLeaf
	for left != "" {
		short := "-" + left[:1]
		left = left[1:]
		var similar []*dOption
		for _, o := range d.options {
			if o.short == short {
				similar = append(similar, o)
			}
		}
		var o *dOption
		var value any = true
		switch {
		case len(similar) > 1:
			return nil, ts.errf("%s is specified ambiguously %d times", short, len(similar))
		case len(similar) == 0:
			if ts.argv {
				return nil, ts.errf("Unknown flag: '%s'", short)
			}
			o = &dOption{short: short, value: false}
			d.options = append(d.options, o)
		default:
			o = similar[0]
			if o.argcount == 1 {
				if left == "" {
					if ts.atEnd() || ts.current() == "--" {
						return nil, ts.errf("%s requires argument", short)
					}
					value = ts.move()
				} else {
					value, left = left, ""
				}
			}
		}
		l := &dLeaf{kind: leafOption, name: o.name(), value: o.value, opt: o}
		if ts.argv {
			l.value = value
		}
		out = append(out, l)
	}
	return out, nil
}

// parseArgv reads a command line into options and arguments.
func (d *Docopt) parseArgv(argv []string) ([]*dLeaf, error) {
	ts := &dTokens{list: argv, argv: true}
	var out []*dLeaf
	for !ts.atEnd() {
		tok := ts.current()
		var items []*dLeaf
		var err error
		switch {
		case tok == "--":
			for _, a := range ts.list[ts.pos:] {
				out = append(out, &dLeaf{kind: leafArgument, value: a})
			}
			return out, nil
		case strings.HasPrefix(tok, "--"):
			items, err = d.parseLong(ts)
		case strings.HasPrefix(tok, "-") && tok != "-":
			items, err = d.parseShorts(ts)
		default:
			items = []*dLeaf{{kind: leafArgument, value: ts.move()}}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
	}
	return out, nil
}

func (p *dPattern) walk(fn func(*dPattern)) {
	fn(p)
	for _, c := range p.children {
		c.walk(fn)
	}
}

// leaves lists the leaves of p, in order.
func (p *dPattern) leaves() []*dLeaf {
	var out []*dLeaf
	p.walk(func(q *dPattern) {
		if q.kind == "leaf" {
			out = append(out, q.leaf)
		}
	})
	return out
}

// cases expands p into the alternatives docopt counts repetitions in:
// either gives one case per branch, "..." doubles its children.
func (p *dPattern) cases() [][]*dLeaf {
	switch p.kind {
	case "leaf":
		return [][]*dLeaf{{p.leaf}}
	case "either":
		var out [][]*dLeaf
		for _, c := range p.children {
			out = append(out, c.cases()...)
		}
		return out
	}
	children := p.children
	if p.kind == "oneormore" {
		children = append(append([]*dPattern(nil), children...), children...)
	}
	out := [][]*dLeaf{nil}
	for _, c := range children {
		var next [][]*dLeaf
		for _, prefix := range out {
			for _, cc := range c.cases() {
				next = append(next, append(append([]*dLeaf(nil), prefix...), cc...))
			}
		}
		out = next
	}
	return out
}

// fixRepeating makes an element that can occur more than once a list
// (arguments, options with a value) or a count (commands, flags).
func (d *Docopt) fixRepeating() {
	repeated := map[string]bool{}
	for _, c := range d.pattern.cases() {
		seen := map[string]int{}
		for _, l := range c {
			seen[l.name]++
		}
		for n, k := range seen {
			if k > 1 {
				repeated[n] = true
			}
		}
	}
	for _, l := range d.pattern.leaves() {
		if l.kind == leafOption && l.opt.repeated {
			repeated[l.name] = true
		}
	}
	for _, l := range d.pattern.leaves() {
		if !repeated[l.name] {
			if l.kind == leafArgument {
				l.value = nil
			}
			continue
		}
		switch {
		case l.kind == leafArgument || l.kind == leafOption && l.opt.argcount == 1:
			switch v := l.value.(type) {
			case string:
				l.value = strings.Fields(v)
			case []string:
			default:
				l.value = []string{}
			}
		default:
			l.value = 0
		}
	}
}

// match is docopt's matching: it returns whether p matched, what is left
// of the command line and what was collected.
func (p *dPattern) match(left, collected []*dLeaf) (bool, []*dLeaf, []*dLeaf) {
	switch p.kind {
	case "leaf":
		return p.leaf.match(left, collected)
	case "required":
		l, c := left, collected
		for _, ch := range p.children {
			var ok bool
			if ok, l, c = ch.match(l, c); !ok {
				return false, left, collected
			}
		}
		return true, l, c
	case "optional", "shortcut":
		for _, ch := range p.children {
			_, left, collected = ch.match(left, collected)
		}
		return true, left, collected
	case "oneormore":
		l, c, times := left, collected, 0
		var prev []*dLeaf
		first := true
		for {
			ok, nl, nc := p.children[0].match(l, c)
			if !ok {
				break
			}
			l, c = nl, nc
			times++
			if !first && sameLeaves(prev, l) {
				break
			}
			prev, first = l, false
		}
		if times >= 1 {
			return true, l, c
		}
		return false, left, collected
	case "either":
		found := false
		var bl, bc []*dLeaf
		for _, ch := range p.children {
			if ok, l, c := ch.match(left, collected); ok && (!found || len(l) < len(bl)) {
				found, bl, bc = true, l, c
			}
		}
		if found {
			return true, bl, bc
		}
	}
	return false, left, collected
}

func sameLeaves(a, b []*dLeaf) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (l *dLeaf) match(left, collected []*dLeaf) (bool, []*dLeaf, []*dLeaf) {
	pos, m := l.singleMatch(left)
	if m == nil {
		return false, left, collected
	}
	rest := append(append([]*dLeaf(nil), left[:pos]...), left[pos+1:]...)
	switch l.value.(type) {
	case int, []string:
		var inc any = 1
		if _, isList := l.value.([]string); isList {
			switch v := m.value.(type) {
			case string:
				inc = []string{v}
			case []string:
				inc = v
			default:
				inc = []string{}
			}
		}
		out := append([]*dLeaf(nil), collected...)
		for i, c := range out {
			if c.name == l.name {
				c = c.copy()
				switch v := c.value.(type) {
				case int:
					c.value = v + 1
				case []string:
					c.value = append(v, inc.([]string)...)
				}
				out[i] = c
				return true, rest, out
			}
		}
		m.value = inc
		return true, rest, append(out, m)
	}
	return true, rest, append(append([]*dLeaf(nil), collected...), m)
}

func (l *dLeaf) singleMatch(left []*dLeaf) (int, *dLeaf) {
	for i, item := range left {
		switch l.kind {
		case leafArgument:
			if item.kind == leafArgument {
				return i, &dLeaf{kind: leafArgument, name: l.name, value: item.value}
			}
		case leafCommand:
			if item.kind == leafArgument {
				if item.value == l.name {
					return i, &dLeaf{kind: leafCommand, name: l.name, value: true}
				}
				return -1, nil
			}
		case leafOption:
			if item.kind == leafOption && item.name == l.name {
				return i, item.copy()
			}
		}
	}
	return -1, nil
}

// Parse matches argv (the words after the program name: for vagga the
// command's name, then its arguments) against the usage. It returns
// every element's value by name ("--port", "<tests>", "test"): nil or a
// string, a bool, a count (int) or a list ([]string). -h or --help, when
// described, returns ErrDocoptHelp; a command line the usage does not
// match a *DocoptError.
func (d *Docopt) Parse(argv []string) (map[string]any, error) {
	items, err := d.parseArgv(argv)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if it.kind == leafOption && (it.name == "--help" || it.name == "-h") && it.value == true {
			return nil, ErrDocoptHelp
		}
	}
	ok, left, collected := d.pattern.match(items, nil)
	if !ok || len(left) > 0 {
		return nil, &DocoptError{Msg: "Invalid arguments."}
	}
	out := map[string]any{}
	for _, l := range d.pattern.leaves() {
		v := l.value
		if s, isList := v.([]string); isList {
			v = append([]string{}, s...)
		}
		out[l.name] = v
	}
	for _, l := range collected {
		out[l.name] = l.value
	}
	return out, nil
}

// OptionEnv turns parsed values into vagga's variables: for each element
// ARG (its long name, else its short name, or the argument's or
// command's name; uppercased, "-" as "_"), VAGGAOPT_ARG holds the raw
// value ("true" or "" for a flag, a count, the words of a list joined by
// spaces) and VAGGACLI_ARG the element as it is written on a command
// line, quoted for sh (eval it).
func OptionEnv(values map[string]any) map[string]string {
	env := map[string]string{}
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, orig := range names {
		key := strings.TrimLeft(orig, "-")
		key = strings.TrimSuffix(strings.TrimPrefix(key, "<"), ">")
		key = strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
		opt, cli := "", ""
		isOption := strings.HasPrefix(orig, "-")
		switch v := values[orig].(type) {
		case bool:
			if v {
				opt, cli = "true", orig
			}
		case int:
			if v > 0 {
				opt = fmt.Sprint(v)
				if strings.HasPrefix(orig, "--") {
					cli = strings.TrimSpace(strings.Repeat(orig+" ", v))
				} else if isOption {
					cli = "-" + strings.Repeat(orig[1:2], v)
				} else {
					cli = strings.TrimSpace(strings.Repeat(orig+" ", v))
				}
			}
		case string:
			opt = v
			if isOption {
				cli = orig + " " + shellQuote(v)
			} else {
				cli = shellQuote(v)
			}
		case []string:
			if len(v) > 0 {
				opt = strings.Join(v, " ")
				if isOption {
					cli = orig
				}
				for _, s := range v {
					cli += " " + shellQuote(s)
				}
			}
		}
		env["VAGGAOPT_"+key] = opt
		env["VAGGACLI_"+key] = cli
	}
	return env
}

// shellQuote quotes s for sh as vagga does: as it is when it has only
// letters, digits and @%+=:,./-, else in single quotes.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	plain := true
	for _, r := range s {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("@%+=:,./-", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
