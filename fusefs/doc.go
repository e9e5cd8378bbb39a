// Package fusefs is ovl's union filesystem on go-fuse: the backend that
// gives kernel overlayfs semantics where the kernel's overlay cannot be
// mounted (old kernels for ordinary users, uppers on filesystems overlay
// refuses, stacks deeper than 500 layers).
//
// # Layers
//
// A stack is an optional writable upper directory over read-only lowers,
// in the on-disk format of package layer (the kernel's): whiteouts are 0/0
// character devices, opaque directories carry overlay.opaque in the
// Spec's Namespace. The union behaves like kernel overlayfs mounted without
// redirect_dir, metacopy and index, which is what unprivileged kernel
// overlay gives:
//
//   - lookup walks the layers top-down; a whiteout ends the walk, a
//     non-directory hides everything below it, an opaque directory hides
//     the layers below it;
//   - every change lands in the upper; a file or directory is copied up
//     (data, mode, owner, times, xattrs) before its first change, built in
//     the work directory and renamed into place, so a crash never leaves a
//     partial file visible;
//   - deleting a name that a lower layer has leaves a whiteout; a
//     directory created where a lower one is hidden or merged is opaque;
//   - a directory that exists in a lower layer cannot be renamed (EXDEV),
//     as the kernel does without redirect_dir;
//   - the overlay's own xattrs (*.overlay.*) are never shown or copied.
//
// Invariants: lower layers are never written. Names are resolved one
// component at a time, relative to directory descriptors, with
// O_NOFOLLOW (or openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS for
// whole paths), so a symlink inside a layer is returned to the kernel and
// never followed by the daemon.
//
// # Inode numbers
//
// A file's inode number is derived from the (device, inode) of the layer
// file it came from, tagged with a small per-device index so that files of
// different layers never share one. A directory takes the number of its
// bottom-most layer directory, a copied-up file keeps the number of its
// origin for the life of the mount, so numbers are stable across copy-up
// and identical in stat and readdir.
//
// # Lock order
//
//	unionFS.renameMu (namespace changes: create, unlink, rename, copy-up of directories)
//	  node.mu of a parent before node.mu of its child
//	    node.io (data descriptor swaps during copy-up)
//
// Read paths (lookup, getattr, read, readdir) take no global lock.
// Functions that need a lock held end in Locked and say so.
//
// # Files and round trips
//
// Without FUSE passthrough the mount answers OPEN with ENOSYS once, so
// the kernel never sends OPEN, FLUSH or RELEASE for files again and keeps
// their page cache; reads and writes go through the node, which always
// addresses its current layer, so a descriptor opened before a copy-up
// sees the copy. With passthrough (a daemon with CAP_SYS_ADMIN, kernel
// 6.9+), files are opened normally and the kernel reads and writes the
// backing upper file directly.
package fusefs
