package builder

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ovl-dev/ovl/vagga"
)

// isFileStep reports whether s only places files, so that the engine
// writes its layer directly instead of running a command in a mount.
func isFileStep(s vagga.Step) bool {
	switch s.(type) {
	case *vagga.ShStep, *vagga.CmdStep:
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
		if progress != nil {
			total = projectUsage(dir, s.HostSource, readOptions(s))
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
	case *vagga.EnvStep, *vagga.DependsStep, *vagga.ContainerStep:
		return nil
	}
	return fmt.Errorf("%s is not a file step", s.Tag())
}

// rel turns an absolute container path into a path relative to the root.
func rel(p string) string { return strings.TrimPrefix(filepath.Clean(p), "/") }

// copyIn copies the source of !Copy s, a file or directory of the
// project in dir, into the container: contents, permission bits and
// symlinks, leaving out what its filter leaves out; owners become the
// step's. It reads the project as walkProject does, never through a
// symlink out of it; a symlink is copied as a symlink.
func copyIn(w *writer, dir string, s *vagga.CopyStep, p Progress) error {
	dst := rel(s.Path)
	return walkProject(dir, s.HostSource, readOptions(s), func(f *projectFile) error {
		target := dst
		if f.rel != "" {
			target = path.Join(dst, f.rel)
		}
		p.Add(f.st.Size)
		return copyEntry(w, f, target, s.OwnerUID, s.OwnerGID)
	})
}

func copyEntry(w *writer, f *projectFile, dst string, uid, gid int) error {
	mode := os.FileMode(f.st.Mode).Perm() | modeBits(f.st.Mode)
	switch {
	case f.isDir():
		return w.dir(dst, mode, uid, gid)
	case f.isLink():
		t, err := f.readlink()
		if err != nil {
			return err
		}
		return w.symlink(dst, t, uid, gid, true)
	case f.isReg():
		file, err := f.open()
		if err != nil {
			return err
		}
		defer file.Close()
		return w.writeFile(dst, file, mode, uid, gid, true)
	}
	return nil // sockets, fifos, devices of the project are not copied
}

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
