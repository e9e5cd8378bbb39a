// Package builder builds the containers of a vagga.yaml as stacks of
// cached layers, one per step, and runs their commands.
//
// A Builder plans a container (every step's key: the previous key, the
// step as written, the content of the project files it reads), reuses
// every step whose layer is in the project's Store, runs the others —
// file steps by writing their layer directly (union.go, files.go,
// filesteps.go, tar.go), command steps through the runner (exec.go,
// runner.go) — squashes the oldest layers when the stack gets deeper
// than the backend mounts (squash.go), and flattens the result into the
// plain directory vagga users and IDEs expect (root.go). A !Container
// child stacks on its parent's layers; nothing is copied.
//
// Files:
//
//	engine.go    Builder, Options, Result: plan and run a container
//	exec.go      command steps, errors of a step, a shell before a step
//	work.go      the work on layer contents, as jobs run here or in a helper
//	mapped.go    owners: root, subordinate ids (the mapped helper), none
//	key.go       step keys and the cache of project file hashes
//	project.go   reading project files, never through a symlink out
//	copyfilter.go  what a !Copy leaves out (.vagga)
//	store.go     the layer store: pending layers, commit and seal
//	union.go     reading a stack of layers as a union, without a mount
//	files.go     writing a layer over a union: copy-up, whiteouts
//	squash.go    squashing old layers to fit the backend
//	root.go      the flattened root and the .vagga/NAME symlink
//	command.go   vagga commands as runner configurations; Resolve
//	clean.go     ovl clean --old, --unused-layers, --everything
//	cache.go     StepCache: layers from and to a cache beyond the store
//	lock.go      the per-container build lock
//	events.go    progress events; progress.go long copies
//
// See README.md for the design and why --cache-each-step is the default.
package builder
