// Package native mounts layer stacks with the kernel's overlayfs.
//
// Mount validates the layer.Spec first (nothing is created or mounted for
// a bad one), then builds the stack with the new mount API: fsopen
// ("overlay"), one fsconfig "lowerdir+" per layer, top first (Linux 6.8+),
// so neither the one-page limit of mount(2) options nor ':' and ',' in
// paths matter; fsmount; move_mount onto the target. Whatever the new
// API refuses as an older kernel or a security policy does is retried
// with mount(2) before the mount is declared impossible: fsopen missing
// (ENOSYS, before Linux 5.2) or blocked (EPERM), "lowerdir+" refused at
// the first fsconfig (6.5-6.7: one escaped "lowerdir" string through
// fsconfig first, when it fits in 255 bytes) or later at the create
// (5.2-6.4, where overlay parses options the legacy way). mount(2) reads
// one page of options: a stack whose paths do not fit is mounted from a
// thread whose working directory is /proc/self/fd, each layer named by
// an O_PATH descriptor's number, so the kernel's 500 layers fit whatever
// their paths.
//
// The same code path serves root in the initial namespace and an ordinary
// user inside a new user + mount namespace (see internal/userns): there,
// and whenever the spec's Namespace is layer.User, the stack is mounted
// with "userxattr", so the kernel keeps its metadata in user.overlay.*
// xattrs and refuses redirect_dir and metacopy.
//
// When the kernel refuses a mount, the error carries the kernel's own
// explanation, read from the filesystem context ("e overlayfs: ...").
package native
