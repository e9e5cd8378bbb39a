// Package vagga reads the part of a vagga.yaml that builds and runs
// containers without network access: containers (setup steps, environ,
// volumes) and commands.
//
// Parsing goes through yaml.Node so that every step, volume and command
// keeps the file and line it was written on: errors say
// "vagga.yaml:12: ...", and the build engine names the failing step the
// same way. Steps ovl cannot run (distribution and language installers,
// downloads) are refused when the file is read, before anything is built,
// with a hint saying what to write instead.
//
// The step types mirror vagga's tags (!Tar, !Sh, !Cmd, !Text, !Copy, !Env,
// !Remove, !EnsureDir, !EmptyDir, !Depends, !Container). Each one encodes
// to a canonical JSON form (Canonical) that the build engine hashes into
// the step's cache key; positions are not part of it, so moving a step
// within the file, or reformatting it, keeps its key.
package vagga
