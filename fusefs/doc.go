// Package fusefs is ovl's union filesystem on go-fuse: the backend that
// gives kernel overlayfs semantics where the kernel's overlay cannot be
// mounted (old kernels for ordinary users, uppers on filesystems overlay
// refuses, such as an overlay mount: a CI job's container root, stacks
// deeper than 500 layers).
//
// # Layers
//
// A stack is an optional writable upper directory over read-only lowers,
// in the on-disk format of package layer (the kernel's): whiteouts are 0/0
// character devices, opaque directories carry overlay.opaque in the
// Spec's Namespace. Where the upper cannot keep a 0/0 device (it is on an
// overlay mount, or mknod is refused), the union writes the kernel's
// xattr whiteouts instead (layer.XattrWhiteouts, decided once at mount by
// layer.ProbeWhiteouts), which the kernel reads in a layer stacked below
// an upper. A lower that records the OCI format is read in it
// (layer.ReadFormat). The union behaves like kernel overlayfs mounted without
// redirect_dir, metacopy and index, which is what unprivileged kernel
// overlay gives:
//
//   - lookup walks the layers top-down (layer.Lookup, the one merge walk,
//     and layer.List for readdir); a whiteout ends the walk, a
//     non-directory hides everything below it, an opaque directory hides
//     the layers below it;
//   - every change lands in the upper; a file or directory is copied up
//     (data, mode, owner, times, xattrs) before its first change, built
//     out of sight (a regular file as an unnamed O_TMPFILE, anything else
//     in the work directory) and linked or renamed into place, so a
//     killed daemon never leaves a partial file visible (see "Copy-up and
//     the disk" for a machine crash);
//   - deleting a name that a lower layer has leaves a whiteout; a
//     directory created over a whiteout of the upper is opaque, and
//     one moved into a merged directory (one created there is not, as
//     in the kernel without index, redirect_dir or metacopy, which
//     allow offline changes to the layers);
//   - file attributes (lsattr, chattr: FS_IOC_GETFLAGS and friends)
//     are those of the visible copy; a change copies the file up;
//   - a directory that exists in a lower layer cannot be renamed (EXDEV),
//     as the kernel does without redirect_dir;
//   - open(2) with O_TMPFILE makes a nameless file (in the work dir
//     until linkat gives it a name in the upper);
//   - the overlay's own xattrs (*.overlay.*) are never shown or copied;
//   - a copy-up leaves the kernel's records (origin.go): overlay.origin
//     on the copy (the lower's file handle, byte for byte what the
//     kernel writes; empty where the kernel could not take one, as in a
//     user namespace), overlay.impure on its parent and on a directory
//     a copied-up file is moved or linked into, overlay.uuid on a fresh
//     upper root; so the kernel mounts the upper as one it wrote.
//
// Other users: the union mounts with default_permissions always, so the
// kernel checks every access against the owners and modes it shows, and
// with allow_other wherever that is safe (see OtherUsers), as kernel
// overlay serves every user by permissions.
//
// Owners: a stack with an ID mapping (layer.Spec.UIDMapping, podman's
// uidmapping= and gidmapping=) shows the owners on disk through it and
// stores new owners back through it (idmap.go).
//
// Invariants: lower layers are never written. Names are resolved one
// component at a time, relative to directory descriptors, with
// O_NOFOLLOW (or openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS for
// whole paths), so a symlink inside a layer is returned to the kernel and
// never followed by the daemon. Whoever owns a layer may change it under
// the mount: every change to an existing file (chmod, chown, utimes,
// truncate, write, xattrs, copy-up's reads) acts on an O_PATH descriptor
// opened without following a symlink and checked to be a file of the
// node's type (resolve.go: openPathAt), or on a file reopened from one;
// an entry swapped for a symlink, a fifo or a device is ESTALE (the
// kernel then looks the name up again), never the file it leads to.
//
// # Inode numbers
//
// A file's inode number is derived from the (device, inode) of the layer
// file it came from, tagged with a small per-device index so that files of
// different layers never share one. A directory takes the number of its
// bottom-most layer directory, a copied-up file keeps the number of its
// origin for the life of the mount, and across remounts where its
// overlay.origin decodes (a daemon with CAP_DAC_READ_SEARCH, as the
// kernel needs too), so numbers are stable across copy-up and identical
// in stat and readdir. A copy of a lower hard link takes its upper
// number, as in the kernel; the node it was copied through lives on for
// descriptors opened before (unionFS.renumbered).
//
// # Lock order
//
//	unionFS.renamMu (renames, against each other)
//	  node.io of a file (exclusive for copy-up, shared for reads and writes)
//	    node.dataMu (the cached data descriptors; only taken under io)
//	      node.mu of a node
//	        node.mu of its parent, briefly, to read a directory descriptor
//
// A parent's mu is never held while a child's is taken. Namespace
// operations in one directory are serialised by the kernel (the
// directory's inode lock); lookups, getattr, reads and readdir take no
// lock shared by the whole filesystem. Functions that need a lock held
// end in Locked and say so in Preconditions.
//
// # Files and round trips
//
// A FUSE round trip costs ~20 µs on a small virtual machine, ten times
// the kernel's own open(2), so the union saves every one it can. By
// default OPEN is answered with ENOSYS once (Linux:
// fs/fuse/file.c:fuse_do_open), after which the kernel opens files
// without asking and with FOPEN_KEEP_CACHE, and sends neither OPEN nor
// RELEASE again: reading a tree costs about what it does on kernel
// overlay. The price is the moment of copy-up: the kernel's overlay
// copies a lower file up when it is opened for writing, the union at
// its first change (write, truncate, chmod, ... which all reach it), so
// an open for writing that changes nothing leaves the layers alone, and
// the link counts that copy-up changes (a lower hard link's, its parent
// directories') change at the first write instead of at the open. A
// lower file unlinked while a descriptor is open on it gets its copy at
// that first change too, as a nameless file of the work dir (the
// kernel's copy from the open, unlinked since).
// Options.StrictOpen restores the kernel's moment, at a round trip per
// open, and with it FUSE passthrough (see below).
//
// FLUSH is answered with ENOSYS once too (the data is written through
// already). Entries, attributes and negative lookups are cached by the
// kernel for an hour, files keep their page cache across opens and
// directory listings are cached (the union is the only writer of its
// upper, and tells the kernel when a copy-up changes attributes). Reads
// and writes that reach the daemon go through the node, which always
// addresses its current layer, so a descriptor opened before a copy-up
// sees the copy; an append goes to the file's real end, which a lower
// file changed in its layer may have moved from where the kernel knows
// it (its cache of the file is dropped then); a read of 64 KiB or more is spliced from the file into
// the reply (the kernel copies it once, not in and out of the daemon).
// As root the kernel reads ahead up to 1 MiB per READ (the mount's
// read_ahead_kb in sysfs; the INIT reply cannot raise it past 128 KiB).
// A listing costs one READDIRPLUS per kernel buffer of entries and the empty
// one that ends it, and one read of each layer's directory: the empty
// read is answered from the listing the first one took, and a lower
// copy's name index comes from that same read.
//
// With StrictOpen and FUSE passthrough (a daemon with
// CAP_SYS_ADMIN in the initial namespace, kernel 6.9+), an upper file is
// opened with the upper file as backing and the kernel reads and writes
// it directly; lower files are served by the daemon (with the page
// cache), because the kernel will not switch an open file's backing at
// copy-up.
//
// Without passthrough, the union negotiates FUSE_HANDLE_KILLPRIV_V2 and
// drops set-id bits itself on write, truncate and chown (file
// capabilities go with the daemon's own change of the upper file); that
// saves the kernel a GETXATTR of security.capability before most changes
// and a GETATTR before each chown. With passthrough the kernel would not
// drop them on a passthrough write, so there it keeps doing it itself.
//
// # Copy-up and the disk
//
// The kernel's overlay syncs a regular file's copy before linking it
// into place, so not even a machine crash can leave a short copy in the
// upper hiding the lower file. That fsync is most of what copying up a
// small file costs (~0.3 ms of ~0.45 here, and the request waits for
// it), so by default the union links the copy as soon as it is complete
// in the page cache and syncs it on a background worker a moment later
// (copysync.go; the syncs trail the copy-ups by at most 64 files, ~20
// ms here). Programs see no difference, nor does anything reading the
// upper after an unmount, and a killed daemon loses nothing; what a
// machine crash (power loss, kernel panic) in that moment can leave is
// the copy short or empty in the upper, the lower file's content still
// in its layer. fuse-overlayfs never syncs a copy-up. Options.StrictOpen
// keeps the kernel's order. A volatile stack (layer.Options.Volatile)
// never syncs: not on copy-up, not on fsync, as the kernel's volatile
// overlay.
//
// The O_TMPFILE is opened on the upper directory the copy goes to, not
// on the work directory as the kernel does: it has no name until it is
// linked either way, but a filesystem places a new inode near the
// directory it is made in (ext4: in its block group), and a copy is
// then placed as a file created in its directory would be, instead of
// all copies crowding the work directory's group.
package fusefs
