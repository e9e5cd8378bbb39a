package selector

import (
	"fmt"
	"os"
	"strings"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/copyback"
	"github.com/ovl-dev/ovl/fusefs"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// Decision is the selector's choice, made once and carried to wherever a
// stack is mounted: runs send it across their re-exec (it is plain
// data, JSON-encoded), builds hand it to every step. Nothing downstream
// chooses again: Open makes the backend it names, Namespace says where
// overlay metadata goes.
type Decision struct {
	// Backend is backend.Native, backend.FUSE or backend.Copy.
	Backend string `json:"backend"`
	// Namespace is where the layers this caller mounts keep overlay
	// metadata (spec.Namespace): trusted.* for real root, user.* for
	// everyone else (layer.NamespaceFor).
	Namespace layer.Namespace `json:"namespace"`
	// MaxLayers is the deepest lower stack the backend mounts; 0 means
	// no limit. Builds squash older layers to fit it.
	MaxLayers int `json:"max_layers"`
	// ForcedBy says who named the backend ("--backend", EnvBackend, a
	// caller such as the drop-in mode); "" when the selector chose it.
	ForcedBy string `json:"forced_by,omitempty"`
	// Reasons say why: what works, and why each faster backend does not.
	Reasons []string `json:"reasons"`
	// Hints say what the user can do to get a faster backend.
	Hints []string `json:"hints,omitempty"`
}

// Overlay reports whether the decision is a real union (native or FUSE),
// as opposed to the copy fallback; vagga's "overlayfs supported".
func (d Decision) Overlay() bool { return d.Backend == backend.Native || d.Backend == backend.FUSE }

// Forced reports whether the caller named the backend rather than let
// the selector choose.
func (d Decision) Forced() bool { return d.ForcedBy != "" }

// Open returns the backend d names, ready to mount. It chooses nothing:
// a process that received d (a run's init process) opens the same
// backend the caller's selector chose.
func (d Decision) Open() (backend.Backend, error) {
	switch d.Backend {
	case backend.Native:
		return native.New(), nil
	case backend.FUSE:
		return fusefs.NewBackend(), nil
	case backend.Copy:
		return copyback.New(), nil
	}
	return nil, fmt.Errorf("unknown backend %q: choose one of %s", d.Backend, strings.Join(backend.Names, ", "))
}

// decided completes d for a caller of the given privilege: the metadata
// namespace and the chosen backend's depth limit.
func decided(d Decision, privileged bool) Decision {
	d.Namespace = layer.NamespaceFor(privileged)
	if b, err := d.Open(); err == nil {
		d.MaxLayers = b.MaxLayers()
	}
	return d
}

// Request is what the caller needs from a backend.
type Request struct {
	// Force names a backend the caller insists on; "" (or "auto") lets
	// the selector choose.
	Force string
	// ForcedBy says where Force came from ("--backend", "OVL_BACKEND"),
	// for messages.
	ForcedBy string
	// Spec is the stack to mount, when known: a backend must take its
	// depth and its optional features.
	Spec *layer.Spec
	// HostMount says the mount must appear in the caller's own mount
	// namespace (`ovl mount`), not inside a user namespace ovl makes for a
	// run or a build. An ordinary user can mount kernel overlay only in
	// the latter.
	HostMount bool
}

// verdict is whether one backend works, and if not why and what to do.
type verdict struct {
	ok    bool
	why   string
	hints []string
}

func (v *verdict) no(why string, hints ...string) {
	if v.ok || v.why == "" {
		v.why = why
	}
	v.ok = false
	v.hints = append(v.hints, hints...)
}

// Choose picks the fastest backend that works for r's user and req: native
// when kernel overlay works, else FUSE when /dev/fuse, a FUSE mount and
// ovl's FUSE backend work, else copy. A forced backend that cannot work
// is an error wrapping backend.ErrUnavailable that says why; the Decision
// still carries the reasons and hints.
func Choose(r *Report, req Request) (Decision, error) {
	nat, fuse := judgeNative(r, req), judgeFUSE(r, req)
	force := req.Force
	if force == "auto" {
		force = ""
	}
	if force != "" {
		d, err := chooseForced(force, req.ForcedBy, nat, fuse)
		return decided(d, r.Privileged()), err
	}
	var d Decision
	switch {
	case nat.ok:
		d.Backend = backend.Native
		d.Reasons = []string{"kernel overlay works for " + who(r)}
	case fuse.ok:
		d.Backend = backend.FUSE
		d.Reasons = []string{"native: " + nat.why, "FUSE works for " + fuseWho(r, req)}
		d.Hints = dedup(nat.hints)
	default:
		d.Backend = backend.Copy
		d.Reasons = []string{"native: " + nat.why, "fuse: " + fuse.why, "copy works everywhere, but copies every layer"}
		d.Hints = dedup(append(nat.hints, fuse.hints...))
	}
	return decided(d, r.Privileged()), nil
}

func chooseForced(force, by string, nat, fuse verdict) (Decision, error) {
	if by == "" {
		by = "the caller"
	}
	d := Decision{Backend: force, ForcedBy: by, Reasons: []string{force + " forced by " + by}}
	var v verdict
	switch force {
	case backend.Native:
		v = nat
	case backend.FUSE:
		v = fuse
	case backend.Copy:
		return d, nil
	default:
		return d, fmt.Errorf("%s: unknown backend %q: choose one of %s", by, force, strings.Join(backend.Names, ", "))
	}
	if v.ok {
		return d, nil
	}
	d.Reasons = append(d.Reasons, force+": "+v.why)
	d.Hints = dedup(v.hints)
	msg := fmt.Sprintf("%s backend (forced by %s): %s", force, by, v.why)
	if len(d.Hints) > 0 {
		msg += "; " + strings.Join(d.Hints, "; ")
	}
	return d, fmt.Errorf("%w: %s", backend.ErrUnavailable, msg)
}

func who(r *Report) string {
	switch {
	case r.Privileged():
		return "root"
	case r.UID == 0:
		return "root in a user namespace (userxattr)"
	default:
		return fmt.Sprintf("uid %d through a user namespace (userxattr)", r.UID)
	}
}

// fuseWho says for whom and how a FUSE mount is made.
func fuseWho(r *Report, req Request) string {
	switch {
	case r.UID == 0:
		return who(r)
	case req.HostMount:
		return fmt.Sprintf("uid %d, mounted with fusermount3", r.UID)
	default:
		return fmt.Sprintf("uid %d in a user namespace", r.UID)
	}
}

// judgeNative says whether kernel overlay works for r's user and req.
func judgeNative(r *Report, req Request) verdict {
	v := verdict{ok: true}
	if r.UID != 0 {
		if u := r.Get(ProbeUserns); !u.OK {
			v.no("cannot make a user namespace: "+u.Error,
				"allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)")
			return v
		}
	}
	for _, name := range []string{ProbeNative, ProbeTwoLowers, ProbeWhiteout, ProbeOpaque} {
		p := r.Get(name)
		if p.OK {
			continue
		}
		v.no(fmt.Sprintf("probe %s: %s", name, p.String()))
		if !r.Privileged() && !kernelAtLeast(r.Kernel, 5, 11) {
			v.hints = append(v.hints, fmt.Sprintf("unprivileged overlay needs Linux 5.11 (this is %s): upgrade the kernel, or run as root", r.Kernel))
		}
		if name == ProbeWhiteout && !r.Get(ProbeMknod).OK && !kernelAtLeast(r.Kernel, 5, 8) {
			v.hints = append(v.hints, "unprivileged whiteouts need Linux 5.8")
		}
		switch r.LayerFS {
		case "overlay", "fuse", "nfs":
			v.hints = append(v.hints, fmt.Sprintf("the layer dir %s is on %s: keep layers on a local filesystem such as ext4, xfs, btrfs or tmpfs (--layer-dir)", r.LayerDir, r.LayerFS))
		}
		break
	}
	if !v.ok {
		return v
	}
	if req.HostMount && r.UID != 0 {
		v.no("an ordinary user can mount kernel overlay only inside a user namespace of its own, which this mount would not outlive",
			"run as root to mount kernel overlay in place; `ovl run` and builds use it as an ordinary user")
		return v
	}
	if req.Spec != nil {
		if n := len(req.Spec.Lowers); n > layer.KernelMaxLayers {
			v.no(fmt.Sprintf("%d lower layers exceed the kernel's limit of %d", n, layer.KernelMaxLayers))
		}
		for _, f := range wantedFeatures(req.Spec.Options) {
			if p := r.Get(f); !p.OK {
				v.no(fmt.Sprintf("%s was asked for, but: %s", f, p.String()))
				if !r.Privileged() && (f == ProbeMetacopy || f == ProbeRedirectDir) {
					v.hints = append(v.hints, f+" needs root: an ordinary user's overlay uses userxattr, which turns it off")
				}
			}
		}
	}
	return v
}

// wantedFeatures names the probes of the optional features o asks for.
func wantedFeatures(o layer.Options) []string {
	var out []string
	for _, f := range []struct {
		on   bool
		name string
	}{{o.Volatile, ProbeVolatile}, {o.Index, ProbeIndex}, {o.RedirectDir, ProbeRedirectDir}, {o.Metacopy, ProbeMetacopy}, {o.Xino, ProbeXino}} {
		if f.on {
			out = append(out, f.name)
		}
	}
	return out
}

// judgeFUSE says whether ovl's FUSE backend works for r's user and req.
func judgeFUSE(r *Report, req Request) verdict {
	v := verdict{ok: true}
	if p := r.Get(ProbeDevFuse); !p.OK {
		switch {
		case strings.Contains(p.Detail, "not loaded"):
			v.no("/dev/fuse: "+p.String(), "load the fuse module (modprobe fuse)")
		case r.UID != 0:
			v.no("/dev/fuse: "+p.String(), "make /dev/fuse 0666 (chmod 0666 /dev/fuse), as stock distributions do")
		default:
			v.no("/dev/fuse: " + p.String())
		}
		return v
	}
	if req.HostMount && r.UID != 0 {
		// Mounted in place, through fusermount3: probed as such.
		if p := r.Get(ProbeFuseHost); !p.OK {
			v.no("an ordinary user mounts FUSE in place with fusermount3: "+p.String(), "install fuse3 (it provides a setuid fusermount3)")
		}
		return v
	}
	if p := r.Get(ProbeFuseMount); !p.OK {
		v.no("a FUSE mount failed: " + p.String())
		if r.UID != 0 && !kernelAtLeast(r.Kernel, 4, 18) {
			v.hints = append(v.hints, fmt.Sprintf("FUSE in a user namespace needs Linux 4.18 (this is %s)", r.Kernel))
		}
		return v
	}
	if p := r.Get(ProbeFuseBackend); !p.OK {
		v.no("ovl's FUSE backend: " + p.String())
		return v
	}
	return v
}

// kernelAtLeast reports whether release ("6.18.44-foo") is at least
// major.minor. An unparsable release counts as new enough.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if n, _ := fmt.Sscanf(release, "%d.%d", &ma, &mi); n < 2 {
		return true
	}
	return ma > major || (ma == major && mi >= minor)
}

func dedup(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// EnvBackend names the environment variable that forces a backend for
// every mount, run and build ("native", "fuse", "copy"; "" or "auto"
// lets the selector choose). Only the selector reads it.
const EnvBackend = "OVL_BACKEND"

// forcedFromEnv returns the backend EnvBackend names, "" for none.
func forcedFromEnv() string {
	if f := os.Getenv(EnvBackend); f != "auto" {
		return f
	}
	return ""
}
