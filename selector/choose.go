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
// overlay metadata goes, Isolation how a run isolates its command.
type Decision struct {
	// Backend is backend.Native, backend.FUSE or backend.Copy.
	Backend string `json:"backend"`
	// Namespace is where the layers this caller mounts keep overlay
	// metadata (spec.Namespace): trusted.* for real root mounting in
	// place, user.* for everyone else (layer.NamespaceFor).
	Namespace layer.Namespace `json:"namespace"`
	// Isolation is how runs and build steps isolate their command, and
	// so where their stacks are mounted: in namespaces of the caller's
	// own (CAP_SYS_ADMIN), in a new user namespace, or, for the copy
	// backend where no namespace can be made, with chroot.
	Isolation Isolation `json:"isolation"`
	// NoNamespace says what refused a namespace, for IsolateChroot and
	// IsolateNone: the runner's messages repeat it.
	NoNamespace string `json:"no_namespace,omitempty"`
	// MaxLayers is the deepest lower stack the backend mounts; 0 means
	// no limit. Builds squash older layers to fit it.
	MaxLayers int `json:"max_layers"`
	// LayerDir is the directory whose filesystem the probes tested, the
	// one chosen among the candidates (place.go) or given; "" when
	// nothing was probed (Force).
	LayerDir string `json:"layer_dir,omitempty"`
	// LayerDirWhy says why LayerDir was chosen ("given", "a tmpfs:
	// /var/lib/ovl is on overlay, ...").
	LayerDirWhy string `json:"layer_dir_why,omitempty"`
	// ForcedBy says who named the backend ("--backend", EnvBackend, a
	// caller such as the drop-in mode); "" when the selector chose it.
	ForcedBy string `json:"forced_by,omitempty"`
	// Reasons say why: what works, and why each faster backend does not.
	Reasons []string `json:"reasons"`
	// Hints say what the user can do to get a faster backend, the most
	// effective first.
	Hints []string `json:"hints,omitempty"`
}

// Isolation is how a run isolates its command.
type Isolation string

const (
	// IsolateNamespaces: new mount and pid namespaces, with the caller's
	// own CAP_SYS_ADMIN (ModeInPlace).
	IsolateNamespaces Isolation = "namespaces"
	// IsolateUserns: new user, mount and pid namespaces, where the
	// caller is root (ModeUserns).
	IsolateUserns Isolation = "user-namespace"
	// IsolateChroot: no namespace can be made (a seccomp filter forbids
	// them, as Docker's default profile does without CAP_SYS_ADMIN): the
	// copy backend copies the root and the command enters it with
	// chroot(2), which needs CAP_SYS_CHROOT. Nothing can be mounted: no
	// /proc, no bind volumes.
	IsolateChroot Isolation = "chroot"
	// IsolateNone: neither namespaces nor chroot: runs cannot start, and
	// the decision's reasons say what is missing.
	IsolateNone Isolation = "none"
)

// isolationOf is the isolation of stacks mounted in mode m.
func isolationOf(m Mode) Isolation {
	if m == ModeInPlace {
		return IsolateNamespaces
	}
	return IsolateUserns
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
// namespace (trusted only for real root mounting in place) and the
// chosen backend's depth limit.
func decided(d Decision, privileged bool) Decision {
	d.Namespace = layer.NamespaceFor(privileged && d.Isolation == IsolateNamespaces)
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
	// Project is set when the layer directory is a project's .vagga (a
	// build's): hints then say to move the project, not --layer-dir.
	Project string
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

// Choose picks the fastest backend that works for r's user and req, in
// the modes r probed (in place first, then in a new user namespace):
// native where kernel overlay works in some mode, else FUSE where
// /dev/fuse, a FUSE mount and ovl's FUSE backend work in some mode, else
// copy, isolated as r allows. A forced backend that cannot work is an
// error wrapping backend.ErrUnavailable that says why; the Decision
// still carries the reasons and hints.
func Choose(r *Report, req Request) (Decision, error) {
	modes := r.Modes()
	nat := make([]verdict, len(modes))
	fuse := make([]verdict, len(modes))
	for i, m := range modes {
		nat[i], fuse[i] = judgeNative(r, m, req), judgeFUSE(r, m, req)
	}
	force := req.Force
	if force == "auto" {
		force = ""
	}
	if force != "" {
		d, err := chooseForced(r, modes, force, req.ForcedBy, nat, fuse)
		d.LayerDir = r.LayerDir
		return decided(d, r.Privileged()), err
	}
	d := Decision{LayerDir: r.LayerDir}
	if i := firstOK(nat); i >= 0 {
		d.Backend, d.Isolation = backend.Native, isolationOf(modes[i])
		d.Reasons = append(whyNot("native", modes[:i], nat), "kernel overlay works for "+who(r, modes[i]))
		return decided(d, r.Privileged()), nil
	}
	d.Reasons = whyNot("native", modes, nat)
	d.Hints = hintsOf(nat)
	if i := firstOK(fuse); i >= 0 {
		d.Backend, d.Isolation = backend.FUSE, isolationOf(modes[i])
		d.Reasons = append(append(d.Reasons, whyNot("fuse", modes[:i], fuse)...), "FUSE works for "+fuseWho(r, modes[i], req))
		return decided(d, r.Privileged()), nil
	}
	d.Backend = backend.Copy
	d.Reasons = append(d.Reasons, whyNot("fuse", modes, fuse)...)
	d.Hints = dedup(append(d.Hints, hintsOf(fuse)...))
	iso, why := copyIsolation(r)
	d.Isolation = iso
	if iso == IsolateChroot || iso == IsolateNone {
		d.NoNamespace = r.Get(ProbeUserns).String()
	}
	d.Reasons = append(d.Reasons, "copy works everywhere, but copies every layer"+why)
	return decided(d, r.Privileged()), nil
}

// firstOK returns the index of the first verdict that is ok, or -1.
func firstOK(vs []verdict) int {
	for i, v := range vs {
		if v.ok {
			return i
		}
	}
	return -1
}

// whyNot says why backend name does not work in each of modes: "native:
// why" for one mode, "native in place: why", "native in a user
// namespace: why" when several were tried.
func whyNot(name string, modes []Mode, vs []verdict) []string {
	var out []string
	for i, m := range modes {
		label := name
		if len(vs) > 1 {
			label += " " + modeWords(m)
		}
		out = append(out, label+": "+vs[i].why)
	}
	return out
}

func modeWords(m Mode) string {
	if m == ModeInPlace {
		return "in place"
	}
	return "in a user namespace"
}

// hintsOf collects the hints of verdicts, in order, once each.
func hintsOf(vs []verdict) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.hints...)
	}
	return dedup(out)
}

// copyIsolation says how runs on the copy backend isolate their command
// here, and, when it is not with namespaces, why (a clause to append).
func copyIsolation(r *Report) (Isolation, string) {
	switch u := r.Get(ProbeUserns); {
	case r.CanMount:
		return IsolateNamespaces, ""
	case u.OK:
		return IsolateUserns, ""
	case r.CanChroot:
		return IsolateChroot, "; no namespace can be made (" + u.String() + "): runs enter a copy with chroot (no /proc, no bind volumes)"
	default:
		return IsolateNone, "; yet runs cannot start here: no namespace can be made (" + u.String() + ") and chroot needs CAP_SYS_CHROOT"
	}
}

func chooseForced(r *Report, modes []Mode, force, by string, nat, fuse []verdict) (Decision, error) {
	if by == "" {
		by = "the caller"
	}
	d := Decision{Backend: force, ForcedBy: by, Reasons: []string{force + " forced by " + by}}
	var vs []verdict
	switch force {
	case backend.Native:
		vs = nat
	case backend.FUSE:
		vs = fuse
	case backend.Copy:
		d.Isolation, _ = copyIsolation(r)
		if d.Isolation == IsolateChroot || d.Isolation == IsolateNone {
			d.NoNamespace = r.Get(ProbeUserns).String()
		}
		return d, nil
	default:
		return d, fmt.Errorf("%s: unknown backend %q: choose one of %s", by, force, strings.Join(backend.Names, ", "))
	}
	if i := firstOK(vs); i >= 0 {
		d.Isolation = isolationOf(modes[i])
		return d, nil
	}
	d.Isolation = isolationOf(modes[len(modes)-1])
	d.Reasons = append(d.Reasons, whyNot(force, modes, vs)...)
	d.Hints = hintsOf(vs)
	msg := fmt.Sprintf("%s backend (forced by %s): %s", force, by, vs[len(vs)-1].why)
	if len(d.Hints) > 0 {
		msg += "; " + strings.Join(d.Hints, "; ")
	}
	return d, fmt.Errorf("%w: %s", backend.ErrUnavailable, msg)
}

// who says for whom, and how, kernel overlay is mounted in mode m.
func who(r *Report, m Mode) string {
	switch {
	case m == ModeInPlace && r.Privileged():
		return "root"
	case m == ModeInPlace && r.UID == 0:
		return "root in a user namespace (userxattr)"
	case m == ModeInPlace:
		return fmt.Sprintf("uid %d with CAP_SYS_ADMIN (userxattr)", r.UID)
	case r.UID == 0 && r.CanMount:
		return "root through a new user namespace (userxattr), its own mounts refused"
	case r.UID == 0:
		return "root without CAP_SYS_ADMIN, through a user namespace (userxattr)"
	default:
		return fmt.Sprintf("uid %d through a user namespace (userxattr)", r.UID)
	}
}

// fuseWho says for whom and how a FUSE mount is made in mode m.
func fuseWho(r *Report, m Mode, req Request) string {
	switch {
	case m == ModeInPlace:
		return who(r, m)
	case req.HostMount:
		return fmt.Sprintf("uid %d, mounted with fusermount3", r.UID)
	case r.UID == 0:
		return "root in a user namespace"
	default:
		return fmt.Sprintf("uid %d in a user namespace", r.UID)
	}
}

// judgeNative says whether kernel overlay works for r's user and req in
// mode m.
func judgeNative(r *Report, m Mode, req Request) verdict {
	v := verdict{ok: true}
	if m == ModeUserns {
		if u := r.Get(ProbeUserns); !u.OK {
			v.no("cannot make a user namespace: "+u.String(), usernsHints(r)...)
			return v
		}
	}
	for _, name := range []string{ProbeNative, ProbeTwoLowers, ProbeWhiteout, ProbeOpaque} {
		p := r.In(m, name)
		if p.OK {
			continue
		}
		v.no(fmt.Sprintf("probe %s: %s", name, p.String()))
		if m == ModeUserns && !kernelAtLeast(r.Kernel, 5, 11) {
			v.hints = append(v.hints, fmt.Sprintf("unprivileged overlay needs Linux 5.11 (this is %s): upgrade the kernel, or run as root", r.Kernel))
		}
		if name == ProbeWhiteout && !r.In(m, ProbeMknod).OK && !kernelAtLeast(r.Kernel, 5, 8) {
			v.hints = append(v.hints, "unprivileged whiteouts need Linux 5.8")
		}
		if !upperCapable(r.LayerFS) {
			v.hints = append(v.hints, moveHint(r, req))
		}
		break
	}
	if !v.ok {
		return v
	}
	if req.HostMount && m == ModeUserns {
		v.no("without CAP_SYS_ADMIN kernel overlay mounts only inside a user namespace of its own, which this mount would not outlive",
			"run as root to mount kernel overlay in place; `ovl run` and builds use it as an ordinary user")
		return v
	}
	if req.Spec != nil {
		if n := len(req.Spec.Lowers); n > layer.KernelMaxLayers {
			v.no(fmt.Sprintf("%d lower layers exceed the kernel's limit of %d", n, layer.KernelMaxLayers))
		}
		for _, f := range wantedFeatures(req.Spec.Options) {
			if p := r.In(m, f); !p.OK {
				v.no(fmt.Sprintf("%s was asked for, but: %s", f, p.String()))
				if !(m == ModeInPlace && r.Privileged()) && (f == ProbeMetacopy || f == ProbeRedirectDir) {
					v.hints = append(v.hints, f+" needs root: an ordinary user's overlay uses userxattr, which turns it off")
				}
			}
		}
	}
	return v
}

// usernsHints say how to allow user namespaces where they were refused.
func usernsHints(r *Report) []string {
	if c := r.Confinement.Container; c != "" {
		if r.UID == 0 {
			return []string{"run the container with --cap-add SYS_ADMIN (mounts in place), or with a seccomp profile that allows user namespaces"}
		}
		return []string{"run the container with a seccomp profile that allows user namespaces (e.g. --security-opt seccomp=unconfined)"}
	}
	return []string{"allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"}
}

// upperCapable reports whether kernel overlay takes an upper directory
// on filesystem fs. On the others (an overlay mount such as a
// container's root, FUSE, network filesystems) it refuses, and moving
// the layer directory is what helps.
func upperCapable(fs string) bool {
	switch fs {
	case "overlay", "fuse", "nfs":
		return false
	}
	return true
}

// moveHint says how to move the layer directory of r to a filesystem
// kernel overlay takes: the project for a build, --layer-dir otherwise.
func moveHint(r *Report, req Request) string {
	where := "is on " + r.LayerFS
	if r.LayerFS == "overlay" && r.Confinement.Container != "" {
		where = "is on the container's overlay root"
	}
	if req.Project != "" {
		return fmt.Sprintf("the project %s %s, which kernel overlay refuses for the layers it writes: mount the project as a volume (-v) for kernel overlay builds", req.Project, where)
	}
	if r.Confinement.Container != "" {
		return fmt.Sprintf("the layer dir %s %s, which kernel overlay refuses as an upper: mount a volume at %s (-v), or pass --layer-dir (or OVL_STATE_DIR) a directory on ext4, xfs, btrfs or tmpfs", r.LayerDir, where, r.LayerDir)
	}
	return fmt.Sprintf("the layer dir %s %s, which kernel overlay refuses as an upper: pass --layer-dir (or OVL_STATE_DIR) a directory on a local filesystem such as ext4, xfs, btrfs or tmpfs", r.LayerDir, where)
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

// judgeFUSE says whether ovl's FUSE backend works for r's user and req
// in mode m.
func judgeFUSE(r *Report, m Mode, req Request) verdict {
	v := verdict{ok: true}
	if p := r.Get(ProbeDevFuse); !p.OK {
		v.no("/dev/fuse: " + p.String())
		if p.Hint != "" {
			v.hints = append(v.hints, p.Hint)
		}
		return v
	}
	if req.HostMount && m == ModeUserns {
		// Without CAP_SYS_ADMIN a mount in place is made through
		// fusermount3, which needs no user namespace: probed as such.
		if p := r.Get(ProbeFuseHost); !p.OK {
			v.no("without CAP_SYS_ADMIN FUSE mounts in place only through fusermount3: "+p.String(), "install fuse3 (it provides a setuid fusermount3)")
		}
		return v
	}
	if m == ModeUserns {
		if u := r.Get(ProbeUserns); !u.OK {
			v.no("cannot make a user namespace: "+u.String(), usernsHints(r)...)
			return v
		}
	}
	// A direct mount that was refused does not decide: the backend
	// mounts through fusermount3 then, which fuse_backend tried.
	if p := r.In(m, ProbeFuseMount); !p.OK && !r.In(m, ProbeFuseBackend).OK {
		v.no("a FUSE mount failed: " + p.String())
		if m == ModeUserns && !kernelAtLeast(r.Kernel, 4, 18) {
			v.hints = append(v.hints, fmt.Sprintf("FUSE in a user namespace needs Linux 4.18 (this is %s)", r.Kernel))
		}
		return v
	}
	if p := r.In(m, ProbeFuseBackend); !p.OK {
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
