package busybox_test

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ovl-dev/ovl/internal/busybox"
)

// TestDirAndTarAgree writes the root both ways and checks they hold the
// same entries (type, permission bits, content or link target), with a
// link per applet and the directories a container needs.
func TestDirAndTarAgree(t *testing.T) {
	bb, err := busybox.Find()
	if errors.Is(err, busybox.ErrNotFound) {
		t.Skip(err)
	}
	dir := t.TempDir()
	if err := busybox.WriteDir(dir, bb); err != nil {
		t.Fatal(err)
	}
	var fromDir []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fromDir = append(fromDir, describe(rel, fi.Mode(), func() ([]byte, error) {
			if fi.Mode()&fs.ModeSymlink != 0 {
				l, err := os.Readlink(p)
				return []byte(l), err
			}
			return os.ReadFile(p)
		}))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	tarball := filepath.Join(t.TempDir(), "root.tar.gz")
	if err := busybox.WriteTar(tarball, bb); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var fromTar []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s belongs to %d:%d in the tarball, want root", h.Name, h.Uid, h.Gid)
		}
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		fromTar = append(fromTar, describe(name, h.FileInfo().Mode(), func() ([]byte, error) {
			if h.Typeflag == tar.TypeSymlink {
				return []byte(h.Linkname), nil
			}
			return io.ReadAll(tr)
		}))
	}
	slices.Sort(fromDir)
	slices.Sort(fromTar)
	if !slices.Equal(fromDir, fromTar) {
		t.Errorf("directory and tarball differ:\ndir %q\ntar %q", fromDir, fromTar)
	}
	for _, want := range []string{"bin/sh L777 busybox", "tmp d1777", "proc d755", "work d755"} {
		if !slices.ContainsFunc(fromDir, func(s string) bool { return len(s) >= len(want) && s[:len(want)] == want }) {
			t.Errorf("the root lacks %q: %q", want, fromDir)
		}
	}
}

// describe is one line per entry: name, mode and a digest of the content.
func describe(name string, mode fs.FileMode, content func() ([]byte, error)) string {
	if mode.IsDir() {
		perm := mode.Perm()
		if mode&fs.ModeSticky != 0 {
			perm |= 0o1000
		}
		return fmt.Sprintf("%s d%o", name, perm)
	}
	b, err := content()
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	if mode&fs.ModeSymlink != 0 {
		return fmt.Sprintf("%s L%o %s", name, mode.Perm(), b)
	}
	return fmt.Sprintf("%s %o %x", name, mode.Perm(), sha256.Sum256(b))
}
