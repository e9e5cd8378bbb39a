// Package bench measures ovl's backends side by side with the tools people
// would use instead: kernel overlayfs mounted directly, fuse-overlayfs,
// unionfs-fuse and a plain `cp -a`.
//
// Every workload runs over the same fixture (a copy of one lower tree),
// with a warm-up and several repetitions per contestant. Contestants are
// interleaved: repetition r runs every contestant once, in an order
// rotated by r, before repetition r+1 starts, so drift on a busy machine
// hits all of them alike. Results are medians with their spread, and ratios
// to kernel overlay and to fuse-overlayfs measured in the same run.
//
// File-system work runs in child processes (find, grep, tar, rm, fio, or
// this binary re-executed as a worker), never in the process that serves a
// FUSE mount. Every mount the bench makes is registered with a Janitor,
// which undoes it on return, on error and on SIGINT/SIGTERM.
//
// Results render as a terminal table, CSV, JSON, a Markdown table for the
// README and an SVG chart (see Report).
package bench
