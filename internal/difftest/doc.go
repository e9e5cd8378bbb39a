// Package difftest is a differential tester for union filesystems: it runs
// the same random sequence of file operations on two identical layer
// stacks, each mounted by a different Mounter, and reports the first place
// where they disagree.
//
// One run of a seed (RunSeed) goes:
//
//  1. BuildStack twice: three lower layers with files, nested dirs,
//     symlinks (some pointing out of the tree), hard links, a fifo, user
//     xattrs, modes and owners, and whiteouts and an opaque directory in
//     the kernel's format in the middle layer;
//  2. mount stack A with the first Mounter, the oracle, and stack B with
//     the second;
//  3. Generate a sequence of operations from the seed (create, write at
//     offsets, append, truncate, mkdir, rmdir, unlink, rename with and
//     without flags, link, symlink, chmod, chown, utimes, setxattr,
//     removexattr, mknod of fifos, sockets and devices, readdir, read,
//     lstat; descriptors held open across other operations: open, pread,
//     pwrite, fstat, close; populate a directory with many files, rm -rf),
//     Widen it (lower files changed or swapped for a symlink in their
//     layer while mounted, listings interleaved with changes, ops by a
//     second uid, set-id modes: widen.go) and Execute it on both mounts,
//     comparing every call's errno and what readdir, read, lstat and
//     fstat return;
//  4. Snapshot both merged trees and Diff them (names, types, modes,
//     owners, sizes, content hashes, nlink, symlink targets, xattrs,
//     mtimes older than 2024, i.e. those the fixture or utimes set, hard
//     link groups by inode number, and whether readdir's d_ino and d_type
//     agree with lstat); the stack's own overlay xattrs must never show,
//     nor two different files one inode number; both uppers must mark
//     the same directories opaque;
//  5. unmount, then mount the layers the other way round (the first
//     Mounter on B's upper, the second on A's) and compare each with what
//     its writer showed: layers written by one must read the same under the
//     other.
//
// With Config.ReadOnly the stacks have no upper, every change must fail
// alike, and step 5 is skipped.
//
// The kernel's overlayfs is the oracle: Kernel against Kernel must always
// agree, and a filesystem that claims overlay semantics must agree with
// Kernel. Every failure names the seed, the first differing operation, the
// tree differences and the operations that led there; the caller's Replay
// hint says how to run just that seed again. A seed names a sequence for
// one version of Generate and of the fixture: changing either changes what
// old seeds do.
//
// The executor never follows a symlink out of the mount: every path is
// resolved with openat2(RESOLVE_IN_ROOT) from the mount's root, and
// operations that take a name act on it relative to its resolved parent.
//
// Tests that run as an ordinary user mount inside a user namespace: the
// test package registers an entry with RegisterEntry, its TestMain calls
// reexec.Init, and RunInUserNamespace runs the seeds in that entry.
package difftest
