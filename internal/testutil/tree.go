package testutil

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// TreeListing describes every file under dir, one line each, sorted:
// path, type and mode, owner, size, modification time of non-directories,
// SHA-256 of regular files, symlink targets, device numbers and xattrs
// (overlay metadata excluded). Two trees with equal listings look the
// same to a user, byte for byte.
func TreeListing(t testing.TB, dir string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d mtime=%d.%09d sha=%x", st.Size, st.Mtim.Sec, st.Mtim.Nsec, h.Sum(nil)[:8])
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		line += xattrText(p)
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatalf("list tree %s: %v", dir, err)
	}
	sort.Strings(lines)
	return lines
}

// TreeHash is a digest of TreeListing.
func TreeHash(t testing.TB, dir string) string {
	t.Helper()
	h := sha256.Sum256([]byte(strings.Join(TreeListing(t, dir), "\n")))
	return fmt.Sprintf("%x", h[:12])
}

func xattrText(p string) string {
	names, err := layer.ListXattrs(p)
	if err != nil {
		return ""
	}
	var parts []string
	for _, name := range names {
		if layer.IsOverlayXattr(name) {
			continue
		}
		v, err := layer.GetXattr(p, name)
		if err != nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%q", name, v))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return ""
	}
	return " xattr{" + strings.Join(parts, ",") + "}"
}

// Names lists the entry names of directory dir, sorted; it fails t if dir
// cannot be read.
func Names(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	sort.Strings(out)
	return out
}

// FullTreeListing is TreeListing with the modification time of every
// entry, directories and symlinks too: two trees with equal full listings
// are the same byte for byte, metadata included.
func FullTreeListing(t testing.TB, dir string) []string {
	t.Helper()
	lines := TreeListing(t, dir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		lines = append(lines, fmt.Sprintf("%s mtime=%d.%09d", rel, st.Mtim.Sec, st.Mtim.Nsec))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return lines
}
