package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenStaysInside opens paths of a tree with symlinks that lead out
// of it, with openat2 and with the one-component-at-a-time walk of
// kernels before 5.6: nothing outside may be opened, whatever the mode.
func TestOpenStaysInside(t *testing.T) {
	top := t.TempDir()
	root, outside := filepath.Join(top, "root"), filepath.Join(top, "outside")
	for _, d := range []string{filepath.Join(root, "d", "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range map[string]string{
		filepath.Join(root, "real"):          "real",
		filepath.Join(root, "d", "sub", "f"): "f",
		filepath.Join(outside, "secret"):     "secret",
	} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"abs":       outside,
		"abssecret": filepath.Join(outside, "secret"),
		"up":        "../outside",
		"d/up":      "../../outside",
		"inner":     "d/sub",
		"innerfile": "real",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	dirfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)

	escapes := []string{"abs/secret", "abssecret", "up/secret", "d/up/secret", "../outside/secret", "d/../../outside/secret", "/abs/secret"}
	for _, fallback := range []bool{false, true} {
		noOpenat2.Store(fallback)
		for _, links := range []Symlinks{NoSymlinks, Inside} {
			for _, rel := range escapes {
				if fd, err := Open(dirfd, rel, unix.O_RDONLY, links); err == nil {
					unix.Close(fd)
					t.Errorf("Open(%q), links %d, fallback %v: opened it; want an error", rel, links, fallback)
				}
			}
			for _, rel := range []string{"real", "d/sub/f", "/real", "d/sub/"} {
				fd, err := Open(dirfd, rel, unix.O_RDONLY, links)
				if err != nil {
					t.Errorf("Open(%q), links %d, fallback %v: %v", rel, links, fallback, err)
					continue
				}
				unix.Close(fd)
			}
			// A symlink inside the tree: followed only by Inside, and only
			// with openat2 (the fallback refuses every symlink).
			fd, err := Open(dirfd, "inner/f", unix.O_RDONLY, links)
			if err == nil {
				unix.Close(fd)
			}
			if want := links == Inside && !fallback; (err == nil) != want {
				t.Errorf("Open(inner/f), links %d, fallback %v: %v; want opened %v", links, fallback, err, want)
			}
			// O_NOFOLLOW|O_PATH on a symlink opens the link itself.
			fd, err = Open(dirfd, "abssecret", unix.O_PATH|unix.O_NOFOLLOW, links)
			if err != nil {
				t.Errorf("Open(abssecret, O_PATH|O_NOFOLLOW), links %d, fallback %v: %v; want the link", links, fallback, err)
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
				t.Errorf("Open(abssecret, O_PATH|O_NOFOLLOW): mode %o, %v; want the symlink", st.Mode, err)
			}
			unix.Close(fd)
		}
	}
	noOpenat2.Store(false)
	if _, err := Open(dirfd, "../outside/secret", unix.O_RDONLY, Inside); !errors.Is(err, unix.EXDEV) {
		t.Errorf("Open(../outside/secret): %v, want EXDEV", err)
	}
}
