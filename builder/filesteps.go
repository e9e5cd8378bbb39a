package builder

import (
	"fmt"
	"io/fs"
	"os"
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

// applyFileStep writes the effect of the file step s into w's upper.
// Steps that change no file (!Env, !Depends, !Container) leave it empty.
func (b *Builder) applyFileStep(w *writer, s vagga.Step) error {
	switch s := s.(type) {
	case *vagga.TextStep:
		for _, f := range s.Files {
			if err := w.writeFile(rel(f.Path), strings.NewReader(f.Content), 0o644, 0, 0, false); err != nil {
				return err
			}
		}
		return nil
	case *vagga.CopyStep:
		p := b.progress(s.Summary(), diskUsage(s.HostSource))
		defer p.Done()
		return copyIn(w, s.HostSource, rel(s.Path), s.OwnerUID, s.OwnerGID, p)
	case *vagga.RemoveStep:
		return w.remove(rel(s.Path))
	case *vagga.EnsureDirStep:
		return w.ensureDir(rel(s.Path), true, false)
	case *vagga.EmptyDirStep:
		return w.emptyDir(rel(s.Path))
	case *vagga.TarStep:
		return untar(w, s, b.hashes, b.progress)
	case *vagga.EnvStep, *vagga.DependsStep, *vagga.ContainerStep:
		return nil
	}
	return fmt.Errorf("%s is not a file step", s.Tag())
}

// rel turns an absolute container path into a path relative to the root.
func rel(p string) string { return strings.TrimPrefix(filepath.Clean(p), "/") }

// copyIn copies the host file or directory src to dst in the container:
// contents, permission bits and symlinks; owners become uid:gid.
func copyIn(w *writer, src, dst string, uid, gid int, p Progress) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return copyEntry(w, src, dst, fi, uid, gid)
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src, path)
		target := dst
		if r != "." {
			target = filepath.ToSlash(filepath.Join(dst, r))
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		p.Add(fi.Size())
		return copyEntry(w, path, target, fi, uid, gid)
	})
}

func copyEntry(w *writer, src, dst string, fi fs.FileInfo, uid, gid int) error {
	mode := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch {
	case fi.IsDir():
		return w.dir(dst, mode, uid, gid)
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return w.symlink(dst, t, uid, gid, true)
	case fi.Mode().IsRegular():
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		return w.writeFile(dst, f, mode, uid, gid, true)
	}
	return nil // sockets, fifos, devices of the project are not copied
}
