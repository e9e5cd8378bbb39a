// Package selector is the one place in ovl that chooses a backend.
//
// It probes what this kernel, this user and the filesystem that will hold
// the layers allow — by doing it, like containers/storage's overlay
// checks: test mounts of kernel overlayfs in a scratch dir under the
// layer directory (as root in place, as an ordinary user inside a new
// user namespace with userxattr), a whiteout and an opaque directory made
// through the mount and read back with the layer package, lowerdir+, the
// optional overlay features, /dev/fuse, a FUSE mount and a mount with
// ovl's own FUSE backend. The probes run in parallel; each is a yes/no
// function (supportsX) returning (ok, detail, err).
//
// The report is cached as JSON under paths.RuntimeDir(), one file per
// key: kernel release and version, effective uid and user namespace, the
// layer directory with its filesystem type and device, and the ovl build.
// A cached answer costs a file read; Options.Refresh probes again.
//
// Choose then picks native, FUSE or copy, with the reasons and hints a
// person can act on:
//
//	b, d, err := selector.Select(ctx, selector.Options{})
//	// d.Backend says which one, d.Reasons why, d.Hints what would be faster.
//
// Runs, builds and the command line call Select (or ByName for a backend
// they already know works); nothing else runs probes or reads the cache.
package selector
