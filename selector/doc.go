// Package selector is the one place in ovl that chooses a backend.
//
// It probes what this kernel, this user and the filesystem that will hold
// the layers allow — by doing it, like containers/storage's overlay
// checks: test mounts of kernel overlayfs in a scratch dir under the
// layer directory, a whiteout and an opaque directory made through the
// mount and read back with the layer package, lowerdir+, the optional
// overlay features, /dev/fuse, a FUSE mount and a mount with ovl's own
// FUSE backend (for an ordinary user also in its own mount namespace,
// through fusermount3, as its `ovl mount` is made). The probes run in
// parallel; each is a yes/no function (supportsX) returning (ok, detail,
// err).
//
// Capability decides, not uid: a caller holding CAP_SYS_ADMIN probes in
// place (ModeInPlace), and, if its own kernel overlay mounts fail, in a
// new user namespace too; a caller without it — an ordinary user, or
// root in a default Docker or podman container — probes inside a new
// user namespace with userxattr (ModeUserns). A "no" says what refused
// (refusal.go): a container without /dev/fuse, a seccomp filter, a
// sysctl, the capability bounding set.
//
// The layer directory is placed (place.go): one given is probed alone;
// otherwise ovl's state directory first, and where kernel overlay
// refuses uppers on its filesystem (a container's overlay root) the
// project's .vagga and a private directory on a tmpfs, keeping the
// fastest.
//
// The report is cached as JSON under paths.RuntimeDir(), one file per
// key: kernel release and version, effective uid and user namespace, the
// layer directory with its filesystem type and device, and the ovl build.
// A cached answer costs a file read; Options.Refresh probes again, and so
// does a change of what the cache records of the environment (user
// namespace sysctls, /dev/fuse, fusermount3, seccomp filters), saying
// what changed. A backend chosen from the cache that fails at its first
// step is probed again once (Recheck).
//
// Choose then picks native, FUSE or copy, how runs isolate their command
// (namespaces of their own, a user namespace, or chroot on the copy
// backend where no namespace can be made), with the reasons and hints a
// person can act on, into one Decision:
//
//	d, err := selector.Select(ctx, selector.Options{})
//	// d.Backend says which one, d.Namespace where overlay metadata goes,
//	// d.Reasons why, d.Hints what would be faster; d.Open() makes it.
//
// Runs, builds and the command line call Select (or Force for a backend
// they name) once and carry the Decision, across a run's re-exec too:
// nothing else runs probes, reads the cache or $OVL_BACKEND, or decides
// which xattr namespace a layer gets.
package selector
