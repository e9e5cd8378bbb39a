// Package busybox makes the minimal container root that ovl's tests, its
// benchmarks and its demo start from, as a directory or as a gzipped
// tarball (the base of a `!Tar` step): the host's static busybox (Debian's
// busybox-static) with a link per applet, /etc/passwd and /etc/group, and
// the directories a container runs with. Nothing is downloaded.
package busybox

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Applets are the commands linked to busybox in the root's /bin.
var Applets = []string{"sh", "ls", "cat", "echo", "mkdir", "rm", "rmdir", "touch", "cp", "mv", "ln",
	"chmod", "chown", "true", "false", "sleep", "kill", "test", "grep", "sed", "find", "id", "env", "pwd",
	"head", "seq", "wc", "sort", "stat", "tar", "printf", "dd", "uname", "whoami"}

// entry is one file of the root.
type entry struct {
	name string      // relative, slash-separated
	mode fs.FileMode // type and permission bits
	body string      // a regular file's content; a symlink's target
}

// dirs are the root's directories: what a container runs with (the
// runner mounts /proc, /sys, /dev, /tmp and /run; builds bind /work).
var dirs = []entry{{"bin", fs.ModeDir | 0o755, ""}, {"etc", fs.ModeDir | 0o755, ""}, {"tmp", fs.ModeDir | fs.ModeSticky | 0o777, ""},
	{"root", fs.ModeDir | 0o700, ""}, {"work", fs.ModeDir | 0o755, ""}, {"var", fs.ModeDir | 0o755, ""}, {"var/cache", fs.ModeDir | 0o755, ""},
	{"proc", fs.ModeDir | 0o755, ""}, {"sys", fs.ModeDir | 0o755, ""}, {"dev", fs.ModeDir | 0o755, ""}, {"run", fs.ModeDir | 0o755, ""}}

// files are the root's configuration and a cache file (for steps that
// remove /var/cache).
var files = []entry{
	{"etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
	{"etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"},
	{"var/cache/index.dat", 0o644, "cached data\n"},
}

// ErrNotFound reports that no static busybox is installed.
var ErrNotFound = errors.New("busybox not found: install the Debian package busybox-static (scripts/deps.sh does)")

// Find returns the path of the host's busybox: /bin/busybox or
// /usr/bin/busybox (where busybox-static puts it), else the one on PATH.
// The error wraps ErrNotFound.
func Find() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		return p, nil
	}
	return "", ErrNotFound
}

// entries lists the root around the busybox binary data, parents first.
func entries(data []byte) []entry {
	out := append([]entry(nil), dirs...)
	out = append(out, entry{"bin/busybox", 0o755, string(data)})
	for _, a := range Applets {
		out = append(out, entry{"bin/" + a, fs.ModeSymlink | 0o777, "busybox"})
	}
	return append(out, files...)
}

// WriteDir makes the root in dir (created if missing; what it holds
// already stays) from the busybox binary at bb. Files belong to the
// caller.
func WriteDir(dir, bb string) error {
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, e := range entries(data) {
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		switch {
		case e.mode.IsDir():
			err = os.MkdirAll(p, 0o755)
		case e.mode&fs.ModeSymlink != 0:
			err = os.Symlink(e.body, p)
		default:
			err = os.WriteFile(p, []byte(e.body), e.mode)
		}
		if err == nil && e.mode&fs.ModeSymlink == 0 {
			err = os.Chmod(p, e.mode) // past the umask
		}
		if err != nil {
			return fmt.Errorf("busybox root in %s: %w", dir, err)
		}
	}
	return nil
}

// WriteTar writes the root, from the busybox binary at bb, to dst as a
// gzipped tarball whose entries belong to root and carry a fixed
// modification time: the same busybox gives the same bytes, so a build
// step keyed on the tarball stays cached.
func WriteTar(dst, bb string) error {
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = writeEntries(tw, entries(data))
	for _, c := range []interface{ Close() error }{tw, zw, f} {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("busybox root tarball %s: %w", dst, err)
	}
	return nil
}

func writeEntries(tw *tar.Writer, es []entry) error {
	mtime := time.Unix(1700000000, 0)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755, ModTime: mtime}); err != nil {
		return err
	}
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: int64(e.mode.Perm()), ModTime: mtime}
		if e.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case e.mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.body
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				return err
			}
		}
	}
	return nil
}
