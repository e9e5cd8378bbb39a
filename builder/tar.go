package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/vagga"
)

// untar unpacks the local tarball of a !Tar step, a file of the project
// in dir, into w at s.Path, taking only the entries under s.Subdir. gzip
// and bzip2 are read natively; xz and zstd through the host's xz or zstd
// command. The tarball's sha256, if the step gives one, is checked
// before (checkTarSum).
func untar(w *writer, dir string, s *vagga.TarStep, progress progressFunc) error {
	f, err := openProjectFile(dir, s.HostFile)
	if err != nil {
		return err
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	p := startProgress(progress, s.Summary(), size)
	defer p.Done()
	r, wait, err := decompress(&countingReader{r: f, p: p})
	if err != nil {
		return fmt.Errorf("%s: %w", s.HostFile, err)
	}
	dst := rel(s.Path)
	if err := w.ensureDir(dst, true, false); err != nil {
		return err
	}
	type dirTimes struct {
		rel   string
		mtime int64
	}
	var dirs []dirTimes
	tr := tar.NewReader(r)
	prefix := strings.Trim(path.Clean("/"+s.Subdir), "/")
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", s.HostFile, err)
		}
		name := strings.Trim(path.Clean("/"+h.Name), "/")
		if prefix != "" {
			if name != prefix && !strings.HasPrefix(name, prefix+"/") {
				continue
			}
			name = strings.TrimPrefix(strings.TrimPrefix(name, prefix), "/")
		}
		target := path.Join(dst, name)
		if name == "" {
			target = dst
		}
		mode := os.FileMode(h.Mode).Perm() | modeBits(uint32(h.Mode))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := w.dir(target, mode, h.Uid, h.Gid); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			dirs = append(dirs, dirTimes{target, h.ModTime.UnixNano()})
		case tar.TypeReg: // the reader turns the old TypeRegA into TypeReg
			if err := w.writeFile(target, tr, mode, h.Uid, h.Gid, true); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			setMtime(w.up(target), h.ModTime.UnixNano())
		case tar.TypeSymlink:
			if err := w.symlink(target, h.Linkname, h.Uid, h.Gid, true); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			setMtime(w.up(target), h.ModTime.UnixNano())
		case tar.TypeLink:
			old := strings.Trim(path.Clean("/"+h.Linkname), "/")
			if prefix != "" {
				old = strings.TrimPrefix(strings.TrimPrefix(old, prefix), "/")
			}
			if err := w.prepare(target, true); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			if err := w.link(path.Join(dst, old), target); err != nil {
				return fmt.Errorf("%s: hard link to %s, which this archive must hold before it: %w", h.Name, h.Linkname, err)
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if err := w.prepare(target, true); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
			dev := unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
			if err := unix.Mknod(w.up(target), kind|uint32(h.Mode&0o7777), int(dev)); err != nil {
				if errors.Is(err, unix.EPERM) && h.Typeflag != tar.TypeFifo {
					continue // unprivileged: the runner provides /dev
				}
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			if err := w.chown(w.up(target), h.Uid, h.Gid); err != nil {
				return err
			}
		default:
			// pax headers are handled by archive/tar; anything else
			// (sparse, GNU long names) has no file to place.
		}
	}
	// Directory times last: creating their entries changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		setMtime(w.up(dirs[i].rel), dirs[i].mtime)
	}
	return wait()
}

// checkTarSum checks the tarball of s against the sha256 the step gives,
// if any.
func checkTarSum(s *vagga.TarStep, hashes *fileHashes) error {
	if s.SHA256 == "" {
		return nil
	}
	sum, err := hashes.tree(s.HostFile, walkOptions{followStart: true})
	if err != nil {
		return err
	}
	if !strings.EqualFold(sum, s.SHA256) {
		return fmt.Errorf("%s has sha256 %s, the step asks for %s", s.HostFile, sum, s.SHA256)
	}
	return nil
}

func setMtime(p string, ns int64) {
	ts := unix.NsecToTimespec(ns)
	unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// decompress returns the uncompressed stream of a tarball, by its magic
// bytes, and a function that waits for a helper process, if one runs.
func decompress(f io.Reader) (io.Reader, func() error, error) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	none := func() error { return nil }
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		return z, none, err
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), none, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return helper("xz", br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return helper("zstd", br)
	}
	return br, none, nil
}

func helper(name string, in io.Reader) (io.Reader, func() error, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, nil, fmt.Errorf("a %s-compressed tarball needs the %s command on the host (install it, or unpack the tarball first)", name, name)
	}
	cmd := exec.Command(name, "-dc")
	cmd.Stdin = in
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return out, func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("%s -dc: %w", name, err)
		}
		return nil
	}, nil
}
