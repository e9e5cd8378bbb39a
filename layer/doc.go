// Package layer owns the on-disk format of an ovl layer stack.
//
// A stack is a list of read-only lower directories (top first), an optional
// writable upper directory with its work directory, and a target where the
// merged tree appears. Every backend (kernel overlayfs, the FUSE union, the
// copy fallback) and the build engine read and write layers through this
// package, so a layer written under one backend mounts under another and
// shows the same files.
//
// The format is the kernel's (Documentation/filesystems/overlayfs.rst):
//
//   - a whiteout is a character device 0/0;
//   - an opaque directory carries the xattr "overlay.opaque" = "y" in the
//     trusted. or user. namespace the store uses;
//   - on read, the 6.7+ xattr whiteouts (a regular file with
//     "overlay.whiteout", in a directory whose "overlay.opaque" is "x") are
//     understood too;
//   - every name is a name: ".wh.a" and ".wh..wh..opq" are files like any
//     other, as the kernel shows them.
//
// A layer unpacked from an OCI (Docker) image may keep that format's
// whiteouts instead (".wh.NAME", ".wh..wh..opq"): such a layer records it
// on its root directory (RecordFormat, the private xattr
// "overlay.ovl.format" = "oci"), every reader here honours the record
// (ReadFormat, Reader.Format, DirPath.Format), and kernel overlay, which
// cannot read it, is refused by the native backend.
//
// No other package matches whiteout names or overlay xattrs itself: they call
// Classify, DirOpacity, MakeWhiteout and MakeOpaque. Nor does any other
// package merge layers itself: the merge walk (walk.go) is Lookup, which
// says what one name of a directory is through a Stack of layers (HitNone,
// HitWhiteout, HitNonDir or HitDir, with the layers that make it up), and
// List, the merged listing of a directory; fusefs, the build engine's file
// steps and Diff all call them. The kernel's option syntax (lowerdir=
// with its escapes and "::", upperdir=, workdir=, the features) is parsed
// and written here too (options.go: ParseOptions, MountOptions.String,
// EscapeOption), for `ovl mount -o`, the drop-in mode and native.
package layer
