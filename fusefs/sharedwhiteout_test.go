package fusefs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// TestWhiteoutsShareAnInode checks that deleting lower files and a lower
// directory leaves whiteouts in the upper that are hard links to one 0/0
// device, as kernel overlay's are (Linux 5.8+), in every open mode: a
// link allocates no inode, which is most of what an rm -rf of a lower
// tree costs the upper's filesystem.
func TestWhiteoutsShareAnInode(t *testing.T) {
	sameAsKernel(t, func(t *testing.T, s *stack) {
		writeFiles(t, s.lowers[0], map[string]string{"a/1": "1", "a/2": "2", "b/3": "3", "c": "c", "d/x": "x", "d/y/z": "z"})
	}, func(t *testing.T, s *stack) string {
		for _, p := range []string{"a/1", "a/2", "b/3", "c"} {
			if err := os.Remove(filepath.Join(s.target, p)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.RemoveAll(filepath.Join(s.target, "d")); err != nil {
			t.Fatal(err)
		}
		var names []string
		inodes := map[uint64]bool{}
		err := filepath.WalkDir(s.upper, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if layer.IsWhiteoutDevice(st.Mode, st.Rdev) {
				rel, _ := filepath.Rel(s.upper, p)
				names = append(names, rel)
				inodes[st.Ino] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(names)
		return fmt.Sprintf("whiteouts %s on %d inode(s)", strings.Join(names, " "), len(inodes))
	})
}
