// Package vagga reads vagga.yaml as vagga documents it (docs/config.rst
// and the pages it lists, in tailhook/vagga): containers (setup steps,
// environ, volumes and their other settings), commands (!Command,
// !Supervise) and mixins, with the tricks of vagga's config library
// (keys starting with "_" left out, !*Include, !*Unpack, units).
// docs/vagga.md of this repository lists every key and what ovl does
// with it.
//
// Parsing goes through yaml.Node so that every step, volume and command
// keeps the file and line it was written on: errors say
// "vagga.yaml:12: ...", and the build engine names the failing step the
// same way. What is not valid vagga is an error for the file, as in
// vagga. What vagga documents but ovl does not do (the steps that
// download, a few settings) is recorded in the Unsupported of the
// container or command that uses it, with a hint: Config.Check and
// CheckCommand refuse only what needs it.
//
// The step types mirror vagga's tags. Each one encodes to a canonical
// JSON form (Canonical) that the build engine hashes into the step's
// cache key; positions are not part of it, so moving a step within the
// file, or reformatting it, keeps its key. docopt.go parses a command's
// options: (a docopt text of ovl's own making).
package vagga
