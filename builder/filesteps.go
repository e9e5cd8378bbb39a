package builder

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ovl-dev/ovl/vagga"
)

// isFileStep reports whether s only places files, so that the engine
// writes its layer directly instead of running a command in a mount.
func isFileStep(s vagga.Step) bool {
	switch s.(type) {
	case *vagga.ShStep, *vagga.CmdStep, *vagga.RunAsStep:
		return false
	}
	return true
}

// applyFileStep writes the effect of the file step s into w's upper,
// reading the project in dir. Steps that change no file (!Env,
// !Depends, !Container) leave it empty.
func applyFileStep(w *writer, dir string, s vagga.Step, progress progressFunc) error {
	switch s := s.(type) {
	case *vagga.TextStep:
		for _, f := range s.Files {
			if err := w.writeFile(rel(f.Path), strings.NewReader(f.Content), 0o644, 0, 0, false); err != nil {
				return err
			}
		}
		return nil
	case *vagga.CopyStep:
		var total int64
		if progress != nil && !s.InContainer {
			o, _ := readOptions(s)
			total = projectUsage(dir, s.HostSource, o)
		}
		p := startProgress(progress, s.Summary(), total)
		defer p.Done()
		return copyIn(w, dir, s, p)
	case *vagga.RemoveStep:
		return w.remove(rel(s.Path))
	case *vagga.EnsureDirStep:
		return w.ensureDir(rel(s.Path), true, false)
	case *vagga.EmptyDirStep:
		return w.emptyDir(rel(s.Path))
	case *vagga.TarStep:
		return untar(w, dir, s, progress)
	case *vagga.CacheDirsStep:
		// The directories are there, empty, for the cache mounted on
		// them while later command steps run.
		for _, d := range s.Dirs {
			if err := w.emptyDir(rel(d.Path)); err != nil {
				return err
			}
		}
		return nil
	case *vagga.BuildStep:
		if s.TemporaryMount != "" {
			// Made without its parents, as vagga does; mounted while
			// later command steps run.
			r := rel(s.TemporaryMount)
			if err := w.ensureDir(parentRel(r), false, false); err != nil {
				return err
			}
			return w.ensureDir(r, true, false)
		}
		if s.HostRoot == "" {
			return fmt.Errorf("%w: the root of container %q was not written", ErrPath, s.Container)
		}
		p := startProgress(progress, s.Summary(), 0)
		defer p.Done()
		return buildCopy(w, s.HostRoot, s, p)
	case *vagga.EnvStep, *vagga.DependsStep, *vagga.ContainerStep:
		return nil
	}
	return fmt.Errorf("%s is not a file step", s.Tag())
}

// rel turns an absolute container path into a path relative to the root.
func rel(p string) string { return strings.TrimPrefix(filepath.Clean(p), "/") }

// projectUsage is the size of the regular files of the project path p
// (the project is in dir), walked as o says: the total of a progress
// bar.
func projectUsage(dir, p string, o walkOptions) int64 {
	var total int64
	walkProject(dir, p, o, func(f *projectFile) error {
		if f.isReg() {
			total += f.st.Size
		}
		return nil
	})
	return total
}
