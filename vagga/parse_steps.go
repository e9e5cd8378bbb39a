package vagga

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// offline is the start of the hint of a step that needs the network.
const offline = "it downloads, and ovl builds offline; "

// unsupportedSteps are the steps of vagga's documentation ovl does not
// run, each with what to write instead.
var unsupportedSteps = map[string]string{
	"!Ubuntu":               offline + "start from a local rootfs with !Tar {url: ./ubuntu-base.tar.gz}",
	"!UbuntuRelease":        offline + "start from a local rootfs with !Tar {url: ./ubuntu-base.tar.gz}",
	"!UbuntuRepo":           offline + "write the sources list with !Text, then !Sh \"apt-get update\"",
	"!UbuntuPPA":            offline + "write the sources list with !Text, then !Sh \"apt-get update\"",
	"!UbuntuUniverse":       offline + "write the sources list with !Text, then !Sh \"apt-get update\"",
	"!AptTrust":             offline + "copy the key into the project, then !Copy it and add it with !Sh",
	"!Alpine":               offline + "start from a local rootfs with !Tar {url: ./alpine-minirootfs.tar.gz}",
	"!AlpineRepo":           offline + "write /etc/apk/repositories with !Text",
	"!Repo":                 offline + "write the distribution's sources with !Text",
	"!Install":              offline + "run the package manager in !Sh (apt-get install -y ..., apk add ...) against a local mirror",
	"!BuildDeps":            offline + "install and remove the packages in !Sh steps",
	"!Download":             offline + "download the file into the project and !Copy it",
	"!TarInstall":           "not supported by ovl: unpack with !Tar {url: ./x.tar.gz, path: /tmp/x}, then !Sh \"cd /tmp/x && ./configure --prefix=/usr && make && make install\"",
	"!Unzip":                offline + "unpack the archive into the project and !Copy it",
	"!Git":                  offline + "clone into the project and !Copy it",
	"!GitInstall":           offline + "clone into the project, !Copy it, then !Sh to install",
	"!GitDescribe":          "not supported by ovl (it runs git on the project): write the version with !Text, or !Depends on a file holding it",
	"!SubConfig":            "not supported by ovl: put the container into this vagga.yaml (or a mixin) and use !Container",
	"!NpmInstall":           offline + "run npm in !Sh against a local registry",
	"!NpmDependencies":      offline + "!Depends package.json, then !Sh \"npm install\"",
	"!NpmConfig":            offline + "configure npm in !Sh or with !Text",
	"!YarnDependencies":     offline + "!Depends package.json yarn.lock, then !Sh \"yarn install\"",
	"!PipConfig":            offline + "write pip.conf with !Text",
	"!Py2Install":           offline + "run pip in !Sh: !Sh \"pip install ...\"",
	"!Py3Install":           offline + "run pip in !Sh: !Sh \"pip3 install ...\"",
	"!Py2Requirements":      offline + "!Depends requirements.txt, then !Sh \"pip install -r /work/requirements.txt\"",
	"!Py3Requirements":      offline + "!Depends requirements.txt, then !Sh \"pip3 install -r /work/requirements.txt\"",
	"!ComposerInstall":      offline + "run composer in !Sh",
	"!ComposerDependencies": offline + "!Depends composer.json, then !Sh \"composer install\"",
	"!ComposerConfig":       offline + "configure composer in !Sh",
	"!GemInstall":           offline + "run gem in !Sh: !Sh \"gem install ...\"",
	"!GemBundle":            offline + "!Depends Gemfile, then !Sh \"bundle install\"",
	"!GemConfig":            offline + "configure gem in !Sh",
}

// parsedStep is one item of setup: the step, or why ovl cannot run it
// (a step vagga documents that ovl does not do).
type parsedStep struct {
	step        Step
	unsupported error
}

// step converts one item of setup:.
func (p *parser) step(n *yaml.Node) (parsedStep, error) {
	pos := p.pos(n)
	tag := n.Tag
	if !strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "!!") {
		return parsedStep{}, p.errf(n, ErrInvalid, "a setup step needs a tag such as !Sh or !Copy", "write e.g. - !Sh \"make\"")
	}
	var s Step
	var err error
	switch tag {
	case "!Sh":
		var script string
		script, err = p.scalar(n, "!Sh")
		s = &ShStep{Script: script, Pos: pos}
	case "!Cmd":
		var args []string
		args, err = p.strings(n, "an argument of !Cmd")
		if err == nil && len(args) == 0 {
			err = p.errf(n, ErrInvalid, "!Cmd needs a command", "write - !Cmd [make, install]")
		}
		s = &CmdStep{Args: args, Pos: pos}
	case "!Text":
		t := &TextStep{Pos: pos}
		err = p.mapping(n, func(key string, k, v *yaml.Node) error {
			dst, err := p.containerPath(k, "!Text path")
			if err != nil {
				return err
			}
			content, err := p.scalar(v, "the text of "+key)
			t.Files = append(t.Files, TextFile{Path: dst, Content: content})
			return err
		})
		sort.Slice(t.Files, func(i, j int) bool { return t.Files[i].Path < t.Files[j].Path })
		s = t
	case "!Copy":
		s, err = p.copyStep(n)
	case "!Env":
		var vars []EnvVar
		vars, err = p.environ(n)
		s = &EnvStep{Vars: vars, Pos: pos}
	case "!Remove":
		var path string
		path, err = p.containerPath(n, "!Remove")
		if err == nil && path == "/" {
			err = p.errf(n, ErrInvalid, "!Remove / would remove the whole container", "")
		}
		s = &RemoveStep{Path: path, Pos: pos}
	case "!EnsureDir":
		var path string
		path, err = p.containerPath(n, "!EnsureDir")
		s = &EnsureDirStep{Path: path, Pos: pos}
	case "!EmptyDir":
		var path string
		path, err = p.containerPath(n, "!EmptyDir")
		if err == nil && path == "/" {
			err = p.errf(n, ErrInvalid, "!EmptyDir / would empty the whole container", "")
		}
		s = &EmptyDirStep{Path: path, Pos: pos}
	case "!Depends":
		s, err = p.dependsStep(n)
	case "!Container":
		var name string
		name, err = p.scalar(n, "!Container")
		s = &ContainerStep{Name: name, Pos: pos}
	case "!Tar":
		return p.tarStep(n)
	case "!CacheDirs":
		c := &CacheDirsStep{Pos: pos}
		err = p.mapping(n, func(key string, k, v *yaml.Node) error {
			dst, err := p.containerPath(k, "!CacheDirs path")
			if err != nil {
				return err
			}
			name, err := p.scalar(v, "the cache name of "+key)
			if err == nil && checkName(name) != nil {
				err = p.errf(v, ErrInvalid, fmt.Sprintf("cache name %q must be a plain file name", name), "write e.g. /root/.cache/pip: pip-cache")
			}
			c.Dirs = append(c.Dirs, CacheDir{Path: dst, Name: name})
			return err
		})
		sort.Slice(c.Dirs, func(i, j int) bool { return c.Dirs[i].Path < c.Dirs[j].Path })
		s = c
	case "!RunAs":
		s, err = p.runAsStep(n)
	case "!Build":
		s, err = p.buildStep(n)
	default:
		hint, known := unsupportedSteps[tag]
		if !known {
			return parsedStep{}, p.errf(n, ErrInvalid, fmt.Sprintf("%s is not a vagga build step", tag),
				"see vagga's docs/build_steps.rst; ovl runs !Tar, !Container, !Sh, !Cmd, !RunAs, !Text, !Copy, !Env, !Remove, !EnsureDir, !EmptyDir, !Depends, !CacheDirs, !Build")
		}
		return parsedStep{unsupported: p.errf(n, ErrUnsupported, fmt.Sprintf("step %s is not supported by ovl", tag), hint)}, nil
	}
	if err != nil {
		if isUnsupported(err) {
			return parsedStep{unsupported: err}, nil
		}
		return parsedStep{}, err
	}
	return parsedStep{step: s}, nil
}

func (p *parser) copyStep(n *yaml.Node) (Step, error) {
	s := &CopyStep{Pos: p.pos(n), Umask: DefaultUmask}
	var srcNode, pathNode *yaml.Node
	err := p.structure(n, "!Copy", func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "source":
			srcNode = v
		case "path":
			pathNode = v
		case "owner-uid", "owner-gid":
			var id int
			id, err = p.boundedInt(v, key, 0, 1<<31-1)
			if key == "owner-uid" {
				s.OwnerUID = &id
			} else {
				s.OwnerGID = &id
			}
		case "umask":
			s.Umask, err = p.mode(v, key, 0o777)
		case "preserve-permissions":
			s.PreservePermissions, err = p.boolean(v, key)
		case "preserve-times":
			s.PreserveTimes, err = p.boolean(v, key)
		default:
			var ok bool
			if ok, err = p.filterKey(&s.Filter, key, v); !ok {
				err = p.unknownKey(k, "!Copy", "source, path, owner-uid, owner-gid, umask, preserve-permissions, preserve-times, ignore-regex, include-regex, rules, no-default-rules")
			}
		}
		return err
	})
	if err == nil && (srcNode == nil || pathNode == nil) {
		err = p.errf(n, ErrInvalid, "!Copy needs source: and path:", "write !Copy {source: /work/dir, path: /opt/dir}")
	}
	if err != nil {
		return nil, err
	}
	if s.Path, err = p.containerPath(pathNode, "!Copy path"); err != nil {
		return nil, err
	}
	src, err := p.scalar(srcNode, "!Copy source")
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(src, "/") && !isWorkPath(src) {
		// A path of the container being built, as vagga copies it.
		s.InContainer = true
		s.Source, err = p.containerPath(srcNode, "!Copy source")
	} else {
		s.Source, s.HostSource, err = p.hostPath(srcNode, "!Copy source")
	}
	if err == nil {
		err = p.checkFilter(n, &s.Filter, "!Copy")
	}
	return s, err
}

func (p *parser) dependsStep(n *yaml.Node) (Step, error) {
	s := &DependsStep{Pos: p.pos(n)}
	pathNode := n
	if resolve(n).Kind == yaml.MappingNode {
		pathNode = nil
		err := p.structure(n, "!Depends", func(key string, k, v *yaml.Node) error {
			if key == "path" {
				pathNode = v
				return nil
			}
			ok, err := p.filterKey(&s.Filter, key, v)
			if !ok {
				err = p.unknownKey(k, "!Depends", "path, ignore-regex, include-regex, rules, no-default-rules")
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if pathNode == nil {
			return nil, p.errf(n, ErrInvalid, "!Depends needs path:", "write !Depends {path: requirements.txt}")
		}
	}
	var err error
	s.Path, s.HostPath, err = p.hostPath(pathNode, "!Depends")
	if err == nil {
		err = p.checkFilter(n, &s.Filter, "!Depends")
	}
	return s, err
}

// filterKey reads key into f if it is one of a path filter's; ok is
// false for another key.
func (p *parser) filterKey(f *PathFilter, key string, v *yaml.Node) (ok bool, err error) {
	switch key {
	case "ignore-regex", "include-regex":
		var s string
		if s, err = p.scalar(v, key); err == nil {
			if _, cerr := regexp.Compile(s); cerr != nil {
				err = p.errf(v, ErrInvalid, fmt.Sprintf("%s %q: %v", key, s, cerr), "write a regular expression over paths relative to the source")
			}
		}
		if key == "ignore-regex" {
			f.IgnoreRegex = &s
		} else {
			f.IncludeRegex = &s
		}
	case "rules":
		f.Rules, err = p.strings(v, "a rule")
		if err == nil {
			err = p.sequence(v, func(item *yaml.Node) error {
				if r := item.Value; !strings.HasPrefix(r, "!") && !strings.HasPrefix(r, "/") {
					return p.errf(item, ErrInvalid, fmt.Sprintf("rule %q: Relative paths are allowed only for excluding rules", r),
						"start an include rule with / (/**/*.py for any depth), an exclude rule with !")
				}
				return nil
			})
		}
	case "no-default-rules":
		f.NoDefaultRules, err = p.boolean(v, key)
	default:
		return false, nil
	}
	return true, err
}

// checkFilter refuses rules mixed with regular expressions, as vagga.
func (p *parser) checkFilter(n *yaml.Node, f *PathFilter, what string) error {
	if (f.Rules != nil || f.NoDefaultRules) && (f.IgnoreRegex != nil || f.IncludeRegex != nil) {
		return p.errf(n, ErrInvalid, what+": You must specify either rules or regular expressions but not both",
			"use rules (with no-default-rules) or ignore-regex/include-regex")
	}
	return nil
}

func (p *parser) tarStep(n *yaml.Node) (parsedStep, error) {
	s := &TarStep{Path: "/", Subdir: ".", Pos: p.pos(n)}
	var urlNode *yaml.Node
	err := p.structure(n, "!Tar", func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "url":
			urlNode = v
		case "path":
			s.Path, err = p.containerPath(v, "!Tar path")
		case "subdir":
			s.Subdir, err = p.scalar(v, "!Tar subdir")
			s.Subdir = strings.Trim(s.Subdir, "/")
			if s.Subdir == "" {
				s.Subdir = "."
			}
		case "sha256":
			s.SHA256, err = p.scalar(v, "!Tar sha256")
		default:
			err = p.unknownKey(k, "!Tar", "url, path, subdir, sha256")
		}
		return err
	})
	if err != nil {
		return parsedStep{}, err
	}
	if urlNode == nil {
		return parsedStep{}, p.errf(n, ErrInvalid, "!Tar needs url:", "write !Tar {url: ./rootfs.tar.gz}")
	}
	u, err := p.scalar(urlNode, "!Tar url")
	if err != nil {
		return parsedStep{}, err
	}
	switch {
	case strings.Contains(u, "://"):
		return parsedStep{unsupported: p.errf(urlNode, ErrUnsupported, fmt.Sprintf("!Tar url %q needs the network", u),
			"ovl builds offline: download the tarball into the project and give its path, e.g. url: ./rootfs.tar.gz")}, nil
	case u == "/volumes" || strings.HasPrefix(u, "/volumes/"):
		return parsedStep{unsupported: p.errf(urlNode, ErrUnsupported, fmt.Sprintf("!Tar url %q (an external volume of vagga's settings) is not supported by ovl", u),
			"put the tarball into the project and give its path, e.g. url: ./rootfs.tar.gz")}, nil
	}
	s.URL, s.HostFile, err = p.hostPath(urlNode, "!Tar url")
	if err != nil {
		return parsedStep{}, err
	}
	return parsedStep{step: s}, nil
}

func (p *parser) runAsStep(n *yaml.Node) (Step, error) {
	s := &RunAsStep{Pos: p.pos(n), ExternalUserID: -1, WorkDir: "/work"}
	var haveScript bool
	err := p.structure(n, "!RunAs", func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "script":
			s.Script, err = p.scalar(v, key)
			haveScript = true
		case "user-id", "external-user-id", "group-id", "supplementary-gids":
			err = p.userKey(key, v, &s.UserID, &s.ExternalUserID, &s.GroupID, &s.SupplementaryGIDs)
		case "work-dir":
			s.WorkDir, err = p.containerPath(v, key)
		case "isolate-network":
			s.IsolateNetwork, err = p.boolean(v, key)
		default:
			err = p.unknownKey(k, "!RunAs", "script, user-id, external-user-id, group-id, supplementary-gids, work-dir, isolate-network")
		}
		return err
	})
	if err == nil && !haveScript {
		err = p.errf(n, ErrInvalid, "!RunAs needs script:", "write !RunAs {user-id: 1, script: \"id\"}")
	}
	return s, err
}

func (p *parser) buildStep(n *yaml.Node) (Step, error) {
	s := &BuildStep{Pos: p.pos(n), Source: "/"}
	err := p.structure(n, "!Build", func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "container":
			s.Container, err = p.scalar(v, key)
		case "source":
			s.Source, err = p.containerPath(v, key)
		case "path":
			s.Path, err = p.containerPath(v, key)
		case "temporary-mount":
			s.TemporaryMount, err = p.containerPath(v, key)
		case "rules":
			var f PathFilter
			_, err = p.filterKey(&f, key, v)
			s.Rules = f.Rules
		case "content-hash":
			s.ContentHash, err = p.boolean(v, key)
		default:
			err = p.unknownKey(k, "!Build", "container, source, path, temporary-mount, rules, content-hash")
		}
		return err
	})
	switch {
	case err != nil:
	case s.Container == "":
		err = p.errf(n, ErrInvalid, "!Build needs container:", "name the container to take files from")
	case (s.Path == "") == (s.TemporaryMount == ""):
		err = p.errf(n, ErrInvalid, "!Build needs either path: or temporary-mount:", "write !Build {container: pkg, source: /packages, path: /srv/packages}")
	}
	return s, err
}
