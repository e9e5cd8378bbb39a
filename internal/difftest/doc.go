// Package difftest is a differential tester for union filesystems: it runs
// the same random sequence of file operations on two identical layer
// stacks, each mounted by a different Mounter, and reports the first place
// where they disagree.
//
// One run of a seed (RunSeed) goes:
//
//  1. BuildStack twice: three lower layers with files, nested dirs,
//     symlinks, hard links, fifos, user xattrs, modes, owners, and a
//     whiteout and an opaque directory (kernel format) in the middle layer;
//  2. mount stack A with the first Mounter and stack B with the second;
//  3. Generate a sequence of operations from the seed and Execute it on
//     both mounts, comparing every call's errno (and readdir's listing);
//  4. Snapshot both merged trees and Diff them (names, types, modes,
//     owners, sizes, content hashes, nlink, symlink targets, xattrs, and
//     old mtimes; the stack's own overlay xattrs must never show);
//  5. unmount, then mount the layers the other way round (the first
//     Mounter on B's upper, the second on A's) and compare each with what
//     its writer showed: layers written by one must read the same under the
//     other.
//
// The kernel's overlayfs is the oracle: Kernel against Kernel must always
// agree, and a filesystem that claims overlay semantics must agree with
// Kernel. Every failure names the seed, and the caller's Replay hint says
// how to run just that seed again.
//
// The executor never follows a symlink out of the mount: every path is
// resolved with openat2(RESOLVE_IN_ROOT) from the mount's root, and
// operations that take a name act on it relative to its resolved parent.
package difftest
