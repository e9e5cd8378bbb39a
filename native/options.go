package native

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// option is one overlay mount option: a flag such as "userxattr", or a
// key with a value such as "index=off". Paths (lowerdir, upperdir,
// workdir) are not options: each mount path passes them its own way.
type option struct {
	key, value string
}

func (o option) String() string {
	if o.value == "" {
		return o.key
	}
	return o.key + "=" + o.value
}

// featureOptions turns spec's optional features into mount options,
// after checking every lower is in the kernel's format (layer.ReadFormat).
// userxattr says the stack keeps its metadata in user.overlay.* xattrs;
// the kernel then refuses redirect_dir and metacopy, and so does this,
// naming the option. Features left off are turned off explicitly where
// the kernel's default could be on (index, redirect_dir, metacopy), so
// the upper stays in the one format every backend reads; userxattr turns
// off the last two by itself.
func featureOptions(spec layer.Spec, userxattr bool) ([]option, error) {
	roots, err := layer.Roots(spec.Lowers)
	if err != nil {
		return nil, err
	}
	for i, r := range roots {
		if r.Format == layer.KernelFormat {
			r.Format = spec.LowerFormat
		}
		if r.Format != layer.KernelFormat {
			return nil, fmt.Errorf("%w: lower[%d] %s is a layer in the %s format, which kernel overlay cannot read (its whiteouts are names to the kernel); mount it with the fuse backend", ErrOption, i, r.Path, r.Format)
		}
	}
	o := spec.Options
	if userxattr && (o.RedirectDir || o.Metacopy) {
		return nil, fmt.Errorf("%w: redirect_dir and metacopy need trusted.overlay xattrs, and this stack uses user.overlay xattrs (userxattr: unprivileged, or Namespace user); turn them off", ErrOption)
	}
	if o.Volatile && !spec.Writable() {
		return nil, fmt.Errorf("%w: volatile only applies to a writable stack (an upper, not read-only); turn it off", ErrOption)
	}
	var opts []option
	if userxattr {
		opts = append(opts, option{key: "userxattr"})
	}
	if o.Volatile {
		opts = append(opts, option{key: "volatile"})
	}
	opts = append(opts, option{"index", onOff(o.Index)})
	if !userxattr {
		// With userxattr the kernel turns both off itself, and refuses
		// redirect_dir=off, which means "follow" where redirects are
		// always followed ("conflicting options: userxattr,redirect_dir=follow").
		// metacopy needs redirects: the kernel refuses metacopy=on with
		// redirect_dir=off, and turns redirect_dir on for metacopy=on.
		opts = append(opts, option{"redirect_dir", onOff(o.RedirectDir || o.Metacopy)}, option{"metacopy", onOff(o.Metacopy)})
	}
	if o.Xino {
		opts = append(opts, option{"xino", "on"})
	}
	return opts, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// legacyData is the mount(2) data string for spec with opts, paths
// escaped in the kernel's option syntax (layer.EscapeOption). The kernel
// reads at most one page of it and silently cuts the rest, so a longer
// string is refused here with ErrOptionsTooLong.
func legacyData(spec layer.Spec, opts []option) (string, error) {
	parts := []string{"lowerdir=" + layer.JoinLowerdir(spec.Lowers, nil)}
	if spec.Upper != "" {
		parts = append(parts, "upperdir="+layer.EscapeOption(spec.Upper), "workdir="+layer.EscapeOption(spec.Work))
	}
	for _, o := range opts {
		parts = append(parts, o.String())
	}
	data := strings.Join(parts, ",")
	if limit := unix.Getpagesize() - 1; len(data) > limit {
		return "", fmt.Errorf("%w: %d bytes for %d lower layers, mount(2) takes at most %d (the kernel stacks up to %d layers; Linux 6.8+ takes them one by one with lowerdir+)",
			ErrOptionsTooLong, len(data), len(spec.Lowers), limit, layer.KernelMaxLayers)
	}
	return data, nil
}

// describe says what a stack is, for errors: "3 lowers (top /l/2), upper /u".
func describe(spec layer.Spec) string {
	s := fmt.Sprintf("%d lowers (top %s)", len(spec.Lowers), spec.Lowers[0])
	if len(spec.Lowers) == 1 {
		s = "lower " + spec.Lowers[0]
	}
	if spec.Upper != "" {
		s += ", upper " + spec.Upper
	}
	if spec.ReadOnly || spec.Upper == "" {
		s += ", read-only"
	}
	return s
}
