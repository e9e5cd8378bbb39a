package builder

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/ovl-dev/ovl/vagga"
)

// copyFilter decides which entries below a !Copy, !Depends or !Build
// source are taken, as vagga's path filter does: by vagga's regular
// expressions (ignore-regex, include-regex) or by its rules (globs, like
// .gitignore's but with includes and excludes the other way round). It
// sees each entry's path relative to the source, slash-separated. What
// is left out is neither copied nor hashed into the step's key, so it
// can change without rebuilding the step.
//
// A walk asks decide about each entry: whether to take it (yield) and
// whether to look below it (descend). The directories above a taken
// entry are taken with it (walkFrom makes them first), as vagga creates
// them.
type copyFilter struct {
	// ignore and include are the regular expressions (regex mode).
	ignore, include *regexp.Regexp
	// rules are the prepared globs (rules mode), in vagga's order.
	rules []*globRule
	// skipUnknownDirs: with no relative include rule, a directory no
	// rule matches is not looked into (vagga does so for speed).
	skipUnknownDirs bool
}

// vagga's default ignore-regex and default rules (build_steps.rst).
const defaultIgnoreRegex = `(^|/)\.(git|hg|svn|vagga)($|/)|~$|\.bak$|\.orig$|^#.*#$`

var defaultIgnoreRules = []string{"!.git/", "!.hg/", "!.svn/", "!.vagga/", "!*.bak", "!*.orig", "!*~", "!#*#", "!.#*"}

// newCopyFilter returns the filter of a !Copy or !Depends: its rules
// (after vagga's default rules unless no-default-rules), else its
// regular expressions, ignore-regex defaulting to vagga's.
func newCopyFilter(f vagga.PathFilter) (*copyFilter, error) {
	if len(f.Rules) > 0 {
		rules := f.Rules
		if !f.NoDefaultRules {
			rules = append(append([]string(nil), defaultIgnoreRules...), f.Rules...)
		}
		return newGlobFilter(rules)
	}
	ignore := defaultIgnoreRegex
	if f.IgnoreRegex != nil {
		ignore = *f.IgnoreRegex
	}
	cf := &copyFilter{}
	var err error
	if cf.ignore, err = regexp.Compile(ignore); err != nil {
		return nil, fmt.Errorf("ignore-regex %q: %w", ignore, err)
	}
	if f.IncludeRegex != nil {
		if cf.include, err = regexp.Compile(*f.IncludeRegex); err != nil {
			return nil, fmt.Errorf("include-regex %q: %w", *f.IncludeRegex, err)
		}
	}
	return cf, nil
}

// match is what a filter says about one entry.
type match int

const (
	matchNone match = iota
	matchInclude
	matchIgnore
)

// decide says whether the entry rel (a directory if dir) is taken, and
// whether the walk looks below it.
func (f *copyFilter) decide(rel string, dir bool) (yield, descend bool) {
	if f == nil {
		return true, true
	}
	if f.rules == nil {
		switch {
		case f.ignore != nil && f.ignore.MatchString(rel):
			return false, false
		case f.include == nil:
			return true, true
		}
		return f.include.MatchString(rel), true
	}
	m, r := f.matchRules(rel, dir)
	switch m {
	case matchInclude:
		// An intermediate rule only leads into a directory; a file rule
		// matching a directory leads into it without taking it.
		return !(r.intermediate || dir && !r.dir), true
	case matchIgnore:
		return false, false
	}
	return false, !f.skipUnknownDirs
}

// globRule is one prepared glob of vagga's rules.
type globRule struct {
	orig         string
	glob         string
	re           *regexp.Regexp
	ignore       bool
	absolute     bool
	dir          bool // matches directories only
	exact        bool // wins over a later rule that is not exact
	intermediate bool // a parent of an include rule: walked into, not taken
	literalSep   bool // the rule has a slash: * and ? stop at /
}

func (r *globRule) key() string {
	return fmt.Sprintf("%q %q %v %v %v %v %v %v", r.orig, r.glob, r.ignore, r.absolute, r.dir, r.exact, r.intermediate, r.literalSep)
}

// newGlobFilter prepares vagga's rules. Each rule becomes several globs:
// its own, one for each directory on its way (intermediate), and one for
// what is below it.
func newGlobFilter(rules []string) (*copyFilter, error) {
	f := &copyFilter{skipUnknownDirs: true}
	seen := map[string]bool{}
	var ruleset []*globRule
	// Rules are prepared last first, so that of two equal globs the
	// later rule's is kept, then put back in order.
	for i := len(rules) - 1; i >= 0; i-- {
		prepared := prepareRule(rules[i])
		for j := len(prepared) - 1; j >= 0; j-- {
			r := prepared[j]
			if seen[r.key()] {
				continue
			}
			seen[r.key()] = true
			if !r.absolute && !r.ignore {
				f.skipUnknownDirs = false
			}
			ruleset = append(ruleset, r)
		}
	}
	for i, j := 0, len(ruleset)-1; i < j; i, j = i+1, j-1 {
		ruleset[i], ruleset[j] = ruleset[j], ruleset[i]
	}
	for _, r := range ruleset {
		re, err := globRegexp(r.glob, r.literalSep)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.orig, err)
		}
		r.re = re
	}
	f.rules = ruleset
	return f, nil
}

// prepareRule turns one rule into its globs, in vagga's order.
func prepareRule(orig string) []*globRule {
	rule := orig
	ignore := strings.HasPrefix(rule, "!")
	if ignore {
		rule = rule[1:]
	}
	if strings.HasPrefix(rule, `\!`) {
		rule = rule[1:] // only "!" is unescaped here; other escapes stay in the glob
	}
	literalSep := strings.Contains(rule, "/")
	dir := strings.HasSuffix(rule, "/")
	absolute := strings.HasPrefix(rule, "/")
	rule = strings.TrimPrefix(strings.TrimSuffix(rule, "/"), "/")
	prefix := ""
	if !absolute && !strings.HasPrefix(rule, "**/") {
		prefix = "**/"
	}
	var out []*globRule
	if ignore {
		out = append(out, &globRule{orig: orig, glob: prefix + rule, ignore: true, absolute: absolute, dir: dir, exact: true})
	} else {
		cur := ""
		for _, part := range strings.Split(rule, "/") {
			cur += part
			if cur == "" {
				continue
			}
			last := len(cur) == len(rule)
			out = append(out, &globRule{orig: orig, glob: prefix + cur, absolute: absolute,
				dir: !last || dir, exact: true, intermediate: !last})
			cur += "/"
		}
	}
	switch {
	case dir:
		glob := prefix + rule + "/**/*"
		if rule == "" {
			glob = "**/*" // "/": everything
		}
		out = append(out, &globRule{orig: orig, glob: glob, ignore: ignore, absolute: absolute})
	case !strings.HasSuffix(rule, "/**"):
		out = append(out, &globRule{orig: orig, glob: prefix + rule + "/**", ignore: ignore, absolute: absolute})
	}
	for _, r := range out {
		r.literalSep = literalSep
	}
	return out
}

// matchRules finds the rule that decides about rel: the last one that
// matches, unless an earlier exact one matches too.
func (f *copyFilter) matchRules(rel string, dir bool) (match, *globRule) {
	var found *globRule
	for i := len(f.rules) - 1; i >= 0; i-- {
		r := f.rules[i]
		if !r.re.MatchString(rel) || !(dir || !r.dir) {
			continue
		}
		if found == nil || r.exact {
			found = r
		}
		if r.exact {
			break
		}
	}
	switch {
	case found == nil:
		return matchNone, nil
	case found.ignore:
		return matchIgnore, found
	}
	return matchInclude, found
}

// globRegexp compiles a glob as vagga's glob library reads it: "*" and
// "?" do not match "/" when the rule has a slash (literalSep); "**" as a
// whole component matches any number of components; [...] and [!...]
// are classes; a backslash escapes the next character.
func globRegexp(glob string, literalSep bool) (*regexp.Regexp, error) {
	star, one := ".*", "."
	if literalSep {
		star, one = "[^/]*", "[^/]"
	}
	var b strings.Builder
	b.WriteString("^")
	parts := strings.Split(glob, "/")
	for i, part := range parts {
		last := i == len(parts)-1
		if part == "**" {
			switch {
			case len(parts) == 1:
				b.WriteString(".*")
			case last:
				b.WriteString("(?:/.*)?") // "a/**": a and everything below it
			default:
				b.WriteString("(?:.*/)?") // any number of components
			}
			continue
		}
		if err := globPart(&b, part, star, one); err != nil {
			return nil, err
		}
		if !last && !(i+1 == len(parts)-1 && parts[i+1] == "**") {
			b.WriteString("/")
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// globPart writes one component of a glob as a regular expression.
func globPart(b *strings.Builder, part, star, one string) error {
	for i := 0; i < len(part); i++ {
		c := part[i]
		switch c {
		case '*':
			for i+1 < len(part) && part[i+1] == '*' {
				i++
			}
			b.WriteString(star)
		case '?':
			b.WriteString(one)
		case '\\':
			if i+1 < len(part) {
				i++
				b.WriteString(regexp.QuoteMeta(string(part[i])))
			} else {
				b.WriteString(`\\`)
			}
		case '[':
			end := strings.IndexByte(part[i+1:], ']')
			if end < 0 {
				return fmt.Errorf("unclosed character class in %q", part)
			}
			if end == 0 { // "[]...]": a ] first is part of the class
				if e := strings.IndexByte(part[i+2:], ']'); e >= 0 {
					end = e + 1
				} else {
					return fmt.Errorf("unclosed character class in %q", part)
				}
			}
			class := part[i+1 : i+1+end]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += end + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return nil
}
