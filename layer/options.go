package layer

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The kernel's overlay option syntax (Documentation/filesystems/overlayfs.rst;
// Linux: fs/overlayfs/params.c), parsed and written in one place:
//
//   - options are separated by ',' and a '\' keeps the next character
//     from separating (ovl_next_opt); empty options (",,") are skipped;
//   - "lowerdir=" lists layers top first, separated by ':', with '\'
//     escaping ':' and itself; "::" starts the data-only layers, after
//     which no regular layer may follow; a leading, trailing or tripled
//     ':' is an error, as is an empty layer. A second "lowerdir=" replaces
//     the first, an empty one clears the layers;
//   - "upperdir=" and "workdir=" values are unescaped ('\' removed, the
//     next character kept); "lowerdir+=" and "datadir+=" (Linux 6.8+) add
//     one layer each and are taken as they are;
//   - flags take no value (userxattr, volatile, default_permissions,
//     override_creds); the others take one of a fixed set of values.
//
// Besides the kernel's own, ParseOptions knows what a FUSE overlay
// program is given in their place (fuse-overlayfs, as podman runs it):
// allow_other, the mount flags mount(8) passes to a helper (dev, nodev,
// suid, nosuid, exec, noexec) and the ID mappings uidmapping= and
// gidmapping= (fuse-overlayfs: CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE...]),
// plus its squash_to_* options. An option it does not know is an error
// naming it: nothing is ignored.

// Errors of ParseOptions, to be tested with errors.Is.
var (
	// ErrUnknownOption reports an option that neither the kernel's
	// overlay nor a FUSE overlay program takes.
	ErrUnknownOption = errors.New("unknown option")
	// ErrOptionValue reports a known option with a value it cannot take,
	// or a malformed list (lowerdir, uidmapping).
	ErrOptionValue = errors.New("bad option value")
)

// IDMapping is one range of a uid or gid mapping, in fuse-overlayfs's
// order (podman writes its container's user namespace map so): the Size
// ids on disk starting at Container show on the mount as the Size ids
// starting at Host, and a process in a user namespace that maps Container
// to Host sees them as they are on disk (see Spec.UIDMapping).
type IDMapping struct {
	Container, Host, Size uint32
}

// MountOptions is an option string in the kernel's overlay syntax,
// parsed (ParseOptions) and written back (String).
type MountOptions struct {
	// Lowers are the lower layers, top first (lowerdir=, lowerdir+=).
	Lowers []string
	// DataLowers are the data-only lower layers (after "::" in lowerdir=,
	// datadir+=), which hold file data for metacopy and show no names.
	DataLowers []string
	// Upper and Work are upperdir= and workdir=.
	Upper, Work string
	// ReadOnly is "ro" ("rw" clears it).
	ReadOnly bool
	// UserXattr is "userxattr": overlay metadata in user.overlay.*.
	UserXattr bool
	// Features holds volatile, index=, redirect_dir= (on: true; off,
	// follow and nofollow: false, none of which creates redirects),
	// metacopy=, xino= (on and auto: true) and allow_other.
	Features Options
	// UIDMapping and GIDMapping are uidmapping= and gidmapping=.
	UIDMapping, GIDMapping []IDMapping
	// Other holds the options ParseOptions knows but gives no field
	// above, as written ("nodev", "uuid=on", "default_permissions",
	// "squash_to_uid=1000"): each user applies those it can and refuses
	// the rest by name.
	Other []string
}

// optionKind says what values an option takes.
type optionKind int

const (
	optFlag   optionKind = iota // no value
	optString                   // any non-empty value
	optEnum                     // one of a set
)

// knownOptions are the options ParseOptions takes, with their values.
var knownOptions = map[string]struct {
	kind   optionKind
	values []string
}{
	// The kernel's overlay (fs/overlayfs/params.c: ovl_parameter_spec).
	"lowerdir":            {kind: optString},
	"lowerdir+":           {kind: optString},
	"datadir+":            {kind: optString},
	"upperdir":            {kind: optString},
	"workdir":             {kind: optString},
	"default_permissions": {kind: optFlag},
	"redirect_dir":        {optEnum, []string{"on", "off", "follow", "nofollow"}},
	"index":               {optEnum, []string{"on", "off"}},
	"uuid":                {optEnum, []string{"on", "off", "null", "auto"}},
	"nfs_export":          {optEnum, []string{"on", "off"}},
	"userxattr":           {kind: optFlag},
	"xino":                {optEnum, []string{"on", "off", "auto"}},
	"metacopy":            {optEnum, []string{"on", "off"}},
	"verity":              {optEnum, []string{"on", "off", "require"}},
	"volatile":            {kind: optFlag},
	"override_creds":      {kind: optFlag},
	// Superblock flags every filesystem takes (fs/fs_context.c).
	"ro": {kind: optFlag}, "rw": {kind: optFlag}, "sync": {kind: optFlag}, "async": {kind: optFlag},
	"dirsync": {kind: optFlag}, "lazytime": {kind: optFlag}, "nolazytime": {kind: optFlag},
	// What a FUSE overlay program is given: mount(8)'s per-mount flags,
	// FUSE's allow_other, fuse-overlayfs's ID mapping and squashing.
	"dev": {kind: optFlag}, "nodev": {kind: optFlag}, "suid": {kind: optFlag}, "nosuid": {kind: optFlag},
	"exec": {kind: optFlag}, "noexec": {kind: optFlag},
	"allow_other":    {kind: optFlag},
	"uidmapping":     {kind: optString},
	"gidmapping":     {kind: optString},
	"squash_to_root": {kind: optFlag},
	"squash_to_uid":  {kind: optString},
	"squash_to_gid":  {kind: optString},
}

// ParseOptions parses option strings in the kernel's overlay syntax, in
// order, as if joined by ',' (as mount(8) joins several -o). An option
// that no overlay takes, or a bad value, is an error naming it that
// wraps ErrUnknownOption or ErrOptionValue.
func ParseOptions(opts ...string) (MountOptions, error) {
	var o MountOptions
	for _, s := range opts {
		for _, opt := range splitEscaped(s, ',') {
			if opt == "" {
				continue // ",," as podman sends it; the kernel skips it too
			}
			if err := o.apply(opt); err != nil {
				return o, err
			}
		}
	}
	return o, nil
}

// apply applies one option.
func (o *MountOptions) apply(opt string) error {
	key, val, hasVal := strings.Cut(opt, "=")
	spec, ok := knownOptions[key]
	if !ok {
		return fmt.Errorf("%q: %w (overlay options are lowerdir, upperdir, workdir, userxattr, volatile, index, redirect_dir, metacopy, xino, ...; see 'ovl mount --help')", opt, ErrUnknownOption)
	}
	switch spec.kind {
	case optFlag:
		if hasVal {
			return fmt.Errorf("%q: %w: %s takes no value", opt, ErrOptionValue, key)
		}
	case optString:
		if val == "" && key != "lowerdir" {
			return fmt.Errorf("%q: %w: %s needs a value", opt, ErrOptionValue, key)
		}
	case optEnum:
		if !slices.Contains(spec.values, val) {
			return fmt.Errorf("%q: %w: want %s=%s", opt, ErrOptionValue, key, strings.Join(spec.values, "|"))
		}
	}
	var err error
	switch key {
	case "lowerdir":
		o.Lowers, o.DataLowers, err = SplitLowerdir(val)
		if err != nil {
			return fmt.Errorf("%q: %w", opt, err)
		}
	case "lowerdir+":
		if len(o.DataLowers) > 0 {
			return fmt.Errorf("%q: %w: a regular lower layer cannot follow data-only ones", opt, ErrOptionValue)
		}
		o.Lowers = append(o.Lowers, val)
	case "datadir+":
		if len(o.Lowers) == 0 {
			return fmt.Errorf("%q: %w: data-only layers go below at least one regular lower layer", opt, ErrOptionValue)
		}
		o.DataLowers = append(o.DataLowers, val)
	case "upperdir":
		o.Upper = unescape(val)
	case "workdir":
		o.Work = unescape(val)
	case "ro":
		o.ReadOnly = true
	case "rw":
		o.ReadOnly = false
	case "userxattr":
		o.UserXattr = true
	case "volatile":
		o.Features.Volatile = true
	case "index":
		o.Features.Index = val == "on"
	case "redirect_dir":
		o.Features.RedirectDir = val == "on"
	case "metacopy":
		o.Features.Metacopy = val == "on"
	case "xino":
		o.Features.Xino = val != "off"
	case "allow_other":
		o.Features.AllowOther = true
	case "uidmapping":
		o.UIDMapping, err = ParseIDMapping(val)
	case "gidmapping":
		o.GIDMapping, err = ParseIDMapping(val)
	default:
		o.Other = append(o.Other, opt)
	}
	if err != nil {
		return fmt.Errorf("%q: %w", opt, err)
	}
	return nil
}

// SplitLowerdir splits a lowerdir= value as the kernel does: layers top
// first, separated by ':', escapes removed from each; the layers after
// "::" are data-only. An empty value gives no layers.
func SplitLowerdir(s string) (lowers, data []string, err error) {
	if s == "" {
		return nil, nil, nil
	}
	if s[0] == ':' {
		return nil, nil, fmt.Errorf("%w: lowerdir starts with ':' (the kernel cannot append to an earlier lowerdir)", ErrOptionValue)
	}
	var cur strings.Builder
	inData := false
	add := func() error {
		p := unescape(cur.String())
		cur.Reset()
		if p == "" {
			return fmt.Errorf("%w: an empty layer in lowerdir", ErrOptionValue)
		}
		if inData {
			data = append(data, p)
		} else {
			lowers = append(lowers, p)
		}
		return nil
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			cur.WriteByte(c)
			cur.WriteByte(s[i+1])
			i++
		case c == ':':
			colons := 1
			for i+colons < len(s) && s[i+colons] == ':' {
				colons++
			}
			switch {
			case colons > 2:
				return nil, nil, fmt.Errorf("%w: lowerdir has %d ':' in a row (':' separates layers, '::' starts the data-only ones)", ErrOptionValue, colons)
			case i+colons == len(s):
				return nil, nil, fmt.Errorf("%w: lowerdir ends with an unescaped ':'", ErrOptionValue)
			case colons == 1 && inData:
				return nil, nil, fmt.Errorf("%w: a regular lower layer cannot follow data-only ones ('::')", ErrOptionValue)
			}
			if err := add(); err != nil {
				return nil, nil, err
			}
			if colons == 2 {
				inData = true
			}
			i += colons - 1
		default:
			cur.WriteByte(c)
		}
	}
	if err := add(); err != nil {
		return nil, nil, err
	}
	return lowers, data, nil
}

// ParseIDMapping parses a fuse-overlayfs ID mapping,
// CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE...], as podman writes it (it
// may start with a ':', which fuse-overlayfs skips, as empty fields).
// Each range must be non-empty, fit in 32 bits, and overlap no other
// range on either side, so that every id maps one way only.
func ParseIDMapping(s string) ([]IDMapping, error) {
	var nums []uint32
	for _, f := range strings.Split(s, ":") {
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not an id (want CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE...])", ErrOptionValue, f)
		}
		nums = append(nums, uint32(n))
	}
	if len(nums) == 0 || len(nums)%3 != 0 {
		return nil, fmt.Errorf("%w: %d numbers, want groups of three: CONTAINER:HOST:SIZE[:CONTAINER:HOST:SIZE...]", ErrOptionValue, len(nums))
	}
	out := make([]IDMapping, 0, len(nums)/3)
	for i := 0; i < len(nums); i += 3 {
		out = append(out, IDMapping{Container: nums[i], Host: nums[i+1], Size: nums[i+2]})
	}
	if err := checkIDMapping(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkIDMapping checks that each range of ms is non-empty, fits in 32
// bits and overlaps no other range on either side, so that every id maps
// one way only. Errors wrap ErrOptionValue.
func checkIDMapping(ms []IDMapping) error {
	for i, m := range ms {
		if m.Size == 0 {
			return fmt.Errorf("%w: range %s is empty", ErrOptionValue, m)
		}
		if uint64(m.Container)+uint64(m.Size) > 1<<32 || uint64(m.Host)+uint64(m.Size) > 1<<32 {
			return fmt.Errorf("%w: range %s goes past the last id", ErrOptionValue, m)
		}
		for _, p := range ms[:i] {
			if overlaps(p.Container, p.Size, m.Container, m.Size) {
				return fmt.Errorf("%w: ranges %s and %s overlap inside the container", ErrOptionValue, p, m)
			}
			if overlaps(p.Host, p.Size, m.Host, m.Size) {
				return fmt.Errorf("%w: ranges %s and %s overlap on the host", ErrOptionValue, p, m)
			}
		}
	}
	return nil
}

func overlaps(a, na, b, nb uint32) bool {
	return uint64(a) < uint64(b)+uint64(nb) && uint64(b) < uint64(a)+uint64(na)
}

func (m IDMapping) String() string { return fmt.Sprintf("%d:%d:%d", m.Container, m.Host, m.Size) }

// FormatIDMapping writes a mapping as ParseIDMapping reads it.
func FormatIDMapping(ms []IDMapping) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return strings.Join(parts, ":")
}

// String writes o in the kernel's syntax, so that ParseOptions gives o
// back: every path escaped (EscapeOption), all lowers in one lowerdir=.
// Features left off are left out.
func (o MountOptions) String() string {
	var parts []string
	if len(o.Lowers) > 0 || len(o.DataLowers) > 0 {
		parts = append(parts, "lowerdir="+JoinLowerdir(o.Lowers, o.DataLowers))
	}
	if o.Upper != "" {
		parts = append(parts, "upperdir="+EscapeOption(o.Upper))
	}
	if o.Work != "" {
		parts = append(parts, "workdir="+EscapeOption(o.Work))
	}
	flag := func(on bool, s string) {
		if on {
			parts = append(parts, s)
		}
	}
	flag(o.ReadOnly, "ro")
	flag(o.UserXattr, "userxattr")
	flag(o.Features.Volatile, "volatile")
	flag(o.Features.Index, "index=on")
	flag(o.Features.RedirectDir, "redirect_dir=on")
	flag(o.Features.Metacopy, "metacopy=on")
	flag(o.Features.Xino, "xino=on")
	flag(o.Features.AllowOther, "allow_other")
	if len(o.UIDMapping) > 0 {
		parts = append(parts, "uidmapping="+FormatIDMapping(o.UIDMapping))
	}
	if len(o.GIDMapping) > 0 {
		parts = append(parts, "gidmapping="+FormatIDMapping(o.GIDMapping))
	}
	parts = append(parts, o.Other...)
	return strings.Join(parts, ",")
}

// EscapeOption quotes the characters the kernel's option parser splits
// on: ',' between options (mount(2)), ':' between lower layers, and the
// backslash itself. The kernel removes every backslash from lowerdir,
// upperdir and workdir values (fs/overlayfs/params.c: ovl_unescape), so
// this is right for all three, through mount(2) and fsconfig alike.
// Values of "lowerdir+" and "datadir+" are taken as they are and must
// not be escaped.
func EscapeOption(p string) string {
	if !strings.ContainsAny(p, `\:,`) {
		return p
	}
	var b strings.Builder
	for _, r := range p {
		if r == '\\' || r == ':' || r == ',' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// JoinLowerdir writes a "lowerdir=" value: lowers (top first) escaped and
// joined by ':', then the data-only layers, each after "::".
func JoinLowerdir(lowers, data []string) string {
	var b strings.Builder
	for i, l := range lowers {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(EscapeOption(l))
	}
	for _, d := range data {
		b.WriteString("::")
		b.WriteString(EscapeOption(d))
	}
	return b.String()
}

// splitEscaped splits s at each sep not escaped by '\', keeping the
// escapes (Linux: fs/overlayfs/params.c ovl_next_opt).
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes each '\' and keeps the character after it (Linux:
// fs/overlayfs/params.c ovl_unescape).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
