package vagga

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unsupportedSteps says, for vagga steps ovl does not run, what to write
// instead. Steps missing here get a generic hint.
var unsupportedSteps = map[string]string{
	"!Ubuntu":          "ovl builds without network: start from a local rootfs with !Tar {url: ./ubuntu-base.tar.gz}",
	"!UbuntuRelease":   "ovl builds without network: start from a local rootfs with !Tar {url: ./ubuntu-base.tar.gz}",
	"!Alpine":          "ovl builds without network: start from a local rootfs with !Tar {url: ./alpine-minirootfs.tar.gz}",
	"!AlpineRelease":   "ovl builds without network: start from a local rootfs with !Tar {url: ./alpine-minirootfs.tar.gz}",
	"!Debian":          "ovl builds without network: start from a local rootfs with !Tar",
	"!Install":         "run the package manager yourself: !Sh \"apt-get install -y ...\" or !Sh \"apk add ...\"",
	"!BuildDeps":       "install and remove the packages in !Sh steps",
	"!UbuntuRepo":      "write the sources list with !Text, then !Sh \"apt-get update\"",
	"!UbuntuPPA":       "write the sources list with !Text, then !Sh \"apt-get update\"",
	"!UbuntuUniverse":  "write the sources list with !Text, then !Sh \"apt-get update\"",
	"!AlpineRepo":      "write /etc/apk/repositories with !Text",
	"!AptTrust":        "copy the key with !Copy and add it with !Sh",
	"!Download":        "download the file into the project and use !Copy",
	"!Git":             "clone into the project and use !Copy",
	"!GitInstall":      "clone into the project, !Copy it, then !Sh to install",
	"!TarInstall":      "use !Tar with a local tarball, then !Sh to install",
	"!Unzip":           "unpack it into the project and use !Copy",
	"!Build":           "build on the other container with !Container, or !Copy from the project",
	"!SubConfig":       "put the containers in this vagga.yaml",
	"!Py2Install":      "run pip yourself: !Sh \"pip install ...\"",
	"!Py3Install":      "run pip yourself: !Sh \"pip3 install ...\"",
	"!Py2Requirements": "!Depends requirements.txt, then !Sh \"pip install -r /work/requirements.txt\"",
	"!Py3Requirements": "!Depends requirements.txt, then !Sh \"pip3 install -r /work/requirements.txt\"",
	"!PipConfig":       "write pip.conf with !Text",
	"!NpmInstall":      "run npm yourself: !Sh \"npm install -g ...\"",
	"!NpmDependencies": "!Depends package.json, then !Sh \"npm install\"",
	"!GemInstall":      "run gem yourself: !Sh \"gem install ...\"",
	"!GemBundle":       "!Depends Gemfile, then !Sh \"bundle install\"",
	"!ComposerInstall": "run composer yourself in a !Sh step",
	"!RunAs":           "use !Sh with su or setpriv inside the container",
	"!CacheDirs":       "ovl keeps no build caches; remove !CacheDirs",
}

// step converts one item of setup:.
func (p *parser) step(n *yaml.Node) (Step, error) {
	pos := p.pos(n)
	tag := n.Tag
	if !strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "!!") {
		return nil, p.errf(n, ErrInvalid, "a setup step needs a tag such as !Sh or !Copy", "write e.g. - !Sh \"make\"")
	}
	switch tag {
	case "!Sh":
		s, err := p.scalar(n, "!Sh")
		return &ShStep{Script: s, Pos: pos}, err
	case "!Cmd":
		args, err := p.strings(n, "an argument of !Cmd")
		if err == nil && len(args) == 0 {
			err = p.errf(n, ErrInvalid, "!Cmd needs a command", "write - !Cmd [make, install]")
		}
		return &CmdStep{Args: args, Pos: pos}, err
	case "!Text":
		s := &TextStep{Pos: pos}
		err := p.mapping(n, func(key string, k, v *yaml.Node) error {
			dst, err := p.containerPath(k, "!Text path")
			if err != nil {
				return err
			}
			content, err := p.scalar(v, "the text of "+key)
			s.Files = append(s.Files, TextFile{Path: dst, Content: content})
			return err
		})
		sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Path < s.Files[j].Path })
		return s, err
	case "!Copy":
		return p.copyStep(n)
	case "!Env":
		vars, err := p.environ(n)
		return &EnvStep{Vars: vars, Pos: pos}, err
	case "!Remove":
		s, err := p.containerPath(n, "!Remove")
		if err == nil && s == "/" {
			err = p.errf(n, ErrInvalid, "!Remove / would remove the whole container", "")
		}
		return &RemoveStep{Path: s, Pos: pos}, err
	case "!EnsureDir":
		s, err := p.containerPath(n, "!EnsureDir")
		return &EnsureDirStep{Path: s, Pos: pos}, err
	case "!EmptyDir":
		s, err := p.containerPath(n, "!EmptyDir")
		if err == nil && s == "/" {
			err = p.errf(n, ErrInvalid, "!EmptyDir / would empty the whole container", "")
		}
		return &EmptyDirStep{Path: s, Pos: pos}, err
	case "!Depends":
		written, host, err := p.hostPath(n, "!Depends")
		return &DependsStep{Path: written, HostPath: host, Pos: pos}, err
	case "!Container":
		s, err := p.scalar(n, "!Container")
		return &ContainerStep{Name: s, Pos: pos}, err
	case "!Tar":
		return p.tarStep(n)
	}
	hint, known := unsupportedSteps[tag]
	if !known {
		hint = "ovl runs !Tar, !Container, !Sh, !Cmd, !Text, !Copy, !Env, !Remove, !EnsureDir, !EmptyDir, !Depends; write the step as !Sh"
	}
	return nil, p.errf(n, ErrUnsupported, fmt.Sprintf("step %s is not supported", tag), hint)
}

func (p *parser) copyStep(n *yaml.Node) (Step, error) {
	s := &CopyStep{Pos: p.pos(n)}
	var haveSource, havePath bool
	err := p.mapping(n, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "source":
			s.Source, s.HostSource, err = p.hostPath(v, "!Copy source")
			haveSource = true
		case "path":
			s.Path, err = p.containerPath(v, "!Copy path")
			havePath = true
		case "owner-uid":
			s.OwnerUID, err = p.integer(v, "owner-uid")
		case "owner-gid":
			s.OwnerGID, err = p.integer(v, "owner-gid")
		default:
			err = p.errf(k, ErrUnsupported, fmt.Sprintf("!Copy option %q is not supported", key), "!Copy takes source, path, owner-uid, owner-gid")
		}
		return err
	})
	if err == nil && (!haveSource || !havePath) {
		err = p.errf(n, ErrInvalid, "!Copy needs source: and path:", "write !Copy {source: /work/dir, path: /opt/dir}")
	}
	return s, err
}

func (p *parser) tarStep(n *yaml.Node) (Step, error) {
	s := &TarStep{Path: "/", Subdir: ".", Pos: p.pos(n)}
	var urlNode *yaml.Node
	err := p.mapping(n, func(key string, k, v *yaml.Node) error {
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
			err = p.errf(k, ErrUnsupported, fmt.Sprintf("!Tar option %q is not supported", key), "!Tar takes url, path, subdir, sha256")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if urlNode == nil {
		return nil, p.errf(n, ErrInvalid, "!Tar needs url:", "write !Tar {url: ./rootfs.tar.gz}")
	}
	u, err := p.scalar(urlNode, "!Tar url")
	if err != nil {
		return nil, err
	}
	if strings.Contains(u, "://") {
		return nil, p.errf(urlNode, ErrUnsupported, fmt.Sprintf("!Tar url %q needs the network", u),
			"download the tarball into the project and give its path, e.g. url: ./rootfs.tar.gz")
	}
	s.URL, s.HostFile, err = p.hostPath(urlNode, "!Tar url")
	return s, err
}
