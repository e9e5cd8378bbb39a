package selector

import (
	"fmt"
	"slices"
	"time"

	"github.com/ovl-dev/ovl/internal/userns"
)

// Names of the probes, as they appear in a Report and in `ovl check --json`.
const (
	// ProbeUserns: this process can start a process in a new user and
	// mount namespace (where the ModeUserns probes then run). A caller
	// holding CAP_SYS_ADMIN is asked only when its own mounts fail.
	ProbeUserns = "userns"
	// ProbeNative: kernel overlay mounts for this user with one lower, an
	// upper and a work dir, and a write lands in the upper.
	ProbeNative = "native"
	// ProbeUserxattr: overlay mounts with userxattr and keeps its
	// metadata in user.overlay.* (what an ordinary user gets).
	ProbeUserxattr = "userxattr"
	// ProbeTwoLowers: a stack of two lower layers shows both merged.
	ProbeTwoLowers = "two_lowers"
	// ProbeWhiteout: removing a lower file through the mount leaves a
	// whiteout in the upper that layer.Classify recognises.
	ProbeWhiteout = "whiteout"
	// ProbeOpaque: rmdir + mkdir of a lower directory through the mount
	// leaves an opaque directory (layer.DirOpacity).
	ProbeOpaque = "opaque"
	// ProbeMknod: this user may create a 0/0 character device (the
	// whiteout format) in a layer directory, in its user namespace.
	ProbeMknod = "mknod_whiteout"
	// ProbeLowerdirPlus: the new mount API takes one "lowerdir+" per layer
	// (Linux 6.8+), so neither the page limit nor ':' in paths matter.
	ProbeLowerdirPlus = "lowerdir_plus"
	// ProbeVolatile, ProbeIndex, ProbeRedirectDir, ProbeMetacopy and
	// ProbeXino: overlay mounts with that optional feature on.
	ProbeVolatile    = "volatile"
	ProbeIndex       = "index"
	ProbeRedirectDir = "redirect_dir"
	ProbeMetacopy    = "metacopy"
	ProbeXino        = "xino"
	// ProbeDevFuse: /dev/fuse opens read-write for this user.
	ProbeDevFuse = "dev_fuse"
	// ProbeFuseMount: a FUSE filesystem mounts (as root in place, as an
	// ordinary user in a user namespace).
	ProbeFuseMount = "fuse_mount"
	// ProbeFusermount: fusermount3 is installed (setuid root), so an
	// ordinary user can mount FUSE in their own namespace.
	ProbeFusermount = "fusermount3"
	// ProbeFuseBackend: ovl's FUSE backend mounts a stack (it may report
	// itself unavailable, e.g. in a build without it).
	ProbeFuseBackend = "fuse_backend"
	// ProbeFuseOtherUIDs: a FUSE mount of this user admits other users,
	// who get what the files' permissions give them (allow_other; the
	// detail says why or why not: fusefs.OtherUsers).
	ProbeFuseOtherUIDs = "fuse_other_uids"
)

// Mode is where the probes that mount ran, and so where a stack will be
// mounted: in the caller's own user namespace, or in a new one.
type Mode string

const (
	// ModeInPlace: with the caller's own CAP_SYS_ADMIN (real root, or
	// root of a user namespace); a run adds mount and pid namespaces.
	ModeInPlace Mode = "in_place"
	// ModeUserns: inside a new user namespace where the caller is root,
	// with user.* metadata (userxattr): an ordinary user, root without
	// CAP_SYS_ADMIN (a default container), or root whose own mounts were
	// refused.
	ModeUserns Mode = "userns"
)

// Result is the answer of one probe.
type Result struct {
	Name string `json:"name"`
	// Mode is where a probe that mounts ran; "" for a probe of the host
	// (userns, dev_fuse, fusermount3), and in reports made before modes
	// existed, where it means the report's first mode.
	Mode Mode `json:"mode,omitempty"`
	OK   bool `json:"ok"`
	// Detail says how the probe was done ("in a user namespace,
	// userxattr") or, for a "no" the kernel gave as expected, why.
	Detail string `json:"detail,omitempty"`
	// Error is the failure that answered "no".
	Error string `json:"error,omitempty"`
	// Hint says what would turn a "no" into a "yes", where the probe
	// knows (dev_fuse: "run the container with --device /dev/fuse").
	Hint string `json:"hint,omitempty"`
	// Millis is how long the probe took.
	Millis float64 `json:"ms"`
}

// Report is everything the probes found for one user, kernel and layer
// filesystem. It is what the cache stores and `ovl check` prints.
type Report struct {
	Kernel          string `json:"kernel"`         // uname release, e.g. "6.18.44"
	KernelVersion   string `json:"kernel_version"` // uname version, the build
	UID             int    `json:"uid"`            // effective uid
	InUserNamespace bool   `json:"in_user_namespace"`
	// CanMount: the caller holds CAP_SYS_ADMIN (userns.CanMount), so the
	// probes ran in place first; without it, root is an ordinary user.
	CanMount bool `json:"cap_sys_admin"`
	// CanChroot: the caller holds CAP_SYS_CHROOT, which runs on the copy
	// backend fall back to where no namespace can be made.
	CanChroot bool `json:"cap_sys_chroot"`
	// Confinement: a seccomp filter, no_new_privs, a container manager.
	Confinement userns.Confinement `json:"confinement"`
	LayerDir    string             `json:"layer_dir"` // where the test mounts were made
	LayerFS     string             `json:"layer_fs"`  // its filesystem type, e.g. "ext4"
	Probes      []Result           `json:"probes"`
	ProbedAt    time.Time          `json:"probed_at"`
	ProbeMillis float64            `json:"probe_ms"` // how long the fresh probe took
	// Cached is true when this report was read from the cache rather
	// than probed now. It is not stored.
	Cached bool `json:"cached"`
	// CacheFile is where the report is cached ("" when caching failed).
	CacheFile string `json:"cache_file,omitempty"`
}

// Get returns the result of probe name (the first mode's, for a probe
// that mounts); a probe that was not run reads as failed.
func (r *Report) Get(name string) Result {
	for _, p := range r.Probes {
		if p.Name == name {
			return p
		}
	}
	return Result{Name: name, Error: "not probed"}
}

// In returns the result of probe name run in mode m.
func (r *Report) In(m Mode, name string) Result {
	first := r.Modes()[0]
	for _, p := range r.Probes {
		if p.Name == name && (p.Mode == m || p.Mode == "" && m == first) {
			return p
		}
	}
	return Result{Name: name, Mode: m, Error: "not probed"}
}

// Modes lists the modes the report's mount probes ran in, in the order
// they were tried: in place first for a caller holding CAP_SYS_ADMIN.
func (r *Report) Modes() []Mode {
	var out []Mode
	for _, p := range r.Probes {
		if p.Mode != "" && !slices.Contains(out, p.Mode) {
			out = append(out, p.Mode)
		}
	}
	if len(out) == 0 {
		// A report without modes: the caller's one way.
		if r.CanMount {
			return []Mode{ModeInPlace}
		}
		return []Mode{ModeUserns}
	}
	return out
}

// OK reports whether every named probe passed.
func (r *Report) OK(names ...string) bool {
	for _, n := range names {
		if !r.Get(n).OK {
			return false
		}
	}
	return true
}

// Privileged reports whether the report is for real root (euid 0 in the
// initial user namespace, holding CAP_SYS_ADMIN), who mounts in place
// with trusted.* metadata.
func (r *Report) Privileged() bool { return r.UID == 0 && !r.InUserNamespace && r.CanMount }

// result makes a Result from a yes/no probe's answer: ok, the reason for
// an expected "no" (or how a "yes" was reached), and an unexpected error.
func result(name string, start time.Time, ok bool, detail string, err error) Result {
	r := Result{Name: name, OK: ok && err == nil, Detail: detail,
		Millis: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func (r Result) String() string {
	switch {
	case r.OK && r.Detail != "":
		return fmt.Sprintf("yes (%s)", r.Detail)
	case r.OK:
		return "yes"
	case r.Error != "" && r.Detail != "":
		return fmt.Sprintf("no (%s): %s", r.Detail, r.Error)
	case r.Error != "":
		return "no: " + r.Error
	case r.Detail != "":
		return "no (" + r.Detail + ")"
	}
	return "no"
}
