package difftest

import "path"

// whName is a name of the pool that starts with ".wh.": names the OCI
// format takes for whiteouts and markers and the kernel's format holds
// like any other (a union that reads them as whiteouts hides files). It
// is ".wh." before the name of something that probably exists (a file
// that would disappear if the name were read as its whiteout), or one of
// the OCI markers, in a probable directory. Generate draws from it
// through newName and existing, so every operation that takes a name
// meets these names too.
func (g *generator) whName() string {
	dir := g.dirs[g.r.IntN(len(g.dirs))]
	switch g.r.IntN(5) {
	case 0:
		return path.Join(dir, ".wh..wh..opq")
	case 1:
		return path.Join(dir, ".wh..wh.plnk")
	}
	target := "x"
	if len(g.paths) > 0 {
		target = path.Base(g.paths[g.r.IntN(len(g.paths))])
	}
	return path.Join(dir, ".wh."+target)
}

// whDir is a directory name of the pool under d: a marker, or ".wh."
// before a name d probably holds.
func (g *generator) whDir(d string) string {
	if g.r.IntN(2) == 0 {
		return path.Join(d, ".wh..wh..opq")
	}
	return path.Join(d, ".wh."+path.Base(g.dirs[g.r.IntN(len(g.dirs))]))
}
