// Package native mounts layer stacks with the kernel's overlayfs.
//
// Mount validates the layer.Spec first (nothing is created or mounted for
// a bad one), then builds the stack with the new mount API: fsopen
// ("overlay"), one fsconfig "lowerdir+" per layer, top first (Linux 6.8+),
// so neither the one-page limit of mount(2) options nor ':' and ',' in
// paths matter; fsmount; move_mount onto the target. Older kernels get,
// in turn, one escaped "lowerdir" string through fsconfig (EINVAL for
// "lowerdir+"), or mount(2) with escaped options when fsopen itself is
// missing (ENOSYS).
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
