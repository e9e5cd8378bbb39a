package vagga

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// volumes reads a PATH: !Kind mapping, in path order.
func (p *parser) volumes(n *yaml.Node) ([]Volume, error) {
	var out []Volume
	err := p.mapping(n, func(key string, k, v *yaml.Node) error {
		dst, err := p.containerPath(k, "volume path")
		if err != nil {
			return err
		}
		vol, err := p.volume(dst, resolve(v))
		if err == nil {
			out = append(out, vol)
		}
		return err
	})
	return out, err
}

func (p *parser) volume(dst string, n *yaml.Node) (Volume, error) {
	v := Volume{Path: dst, Pos: p.pos(n), UID: -1, GID: -1}
	switch n.Tag {
	case "!Snapshot":
		v.Kind = VolumeSnapshot
		err := p.mapping(n, func(key string, k, val *yaml.Node) error {
			var err error
			switch key {
			case "size":
				v.Size, err = p.size(val)
			case "owner-uid":
				v.UID, err = p.integer(val, "owner-uid")
			case "owner-gid":
				v.GID, err = p.integer(val, "owner-gid")
			case "container":
				v.Container, err = p.scalar(val, "container")
			default:
				err = p.errf(k, ErrUnsupported, fmt.Sprintf("!Snapshot option %q is not supported", key), "!Snapshot takes size, owner-uid, owner-gid, container")
			}
			return err
		})
		return v, err
	case "!Tmpfs":
		v.Kind = VolumeTmpfs
		err := p.mapping(n, func(key string, k, val *yaml.Node) error {
			var err error
			switch key {
			case "size":
				v.Size, err = p.size(val)
			case "mode":
				var m uint64
				var s string
				if s, err = p.scalar(val, "mode"); err == nil {
					if m, err = strconv.ParseUint(s, 0, 32); err != nil {
						err = p.errf(val, ErrInvalid, fmt.Sprintf("mode %q is not a number", s), "write it in octal: 0o755")
					}
				}
				v.Mode = uint32(m)
			default:
				err = p.errf(k, ErrUnsupported, fmt.Sprintf("!Tmpfs option %q is not supported", key), "!Tmpfs takes size and mode")
			}
			return err
		})
		return v, err
	case "!BindRW", "!BindRO":
		v.Kind = VolumeBind
		v.ReadOnly = n.Tag == "!BindRO"
		_, host, err := p.hostPath(n, n.Tag)
		v.HostPath = host
		return v, err
	}
	return v, p.errf(n, ErrUnsupported, fmt.Sprintf("volume %s is not supported", n.Tag),
		"ovl mounts !Snapshot, !Tmpfs, !BindRW and !BindRO volumes")
}

// size reads a byte count as vagga writes it: 100Mi, 1G, 512k, 4096.
func (p *parser) size(n *yaml.Node) (int64, error) {
	s, err := p.scalar(n, "size")
	if err != nil {
		return 0, err
	}
	v, err := ParseSize(s)
	if err != nil {
		return 0, p.errf(n, ErrInvalid, err.Error(), "write e.g. 100Mi, 1G or 4096")
	}
	return v, nil
}

// ParseSize parses a byte count with an optional suffix: k, M, G, T
// (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024).
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSuffix(num, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q does not parse", s)
	}
	return v * mult, nil
}
