package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustBeGone(t *testing.T, root string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		if _, err := os.Lstat(filepath.Join(root, rel)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/%s is there (%v), want it gone", rel, err)
		}
	}
}

// TestBuildRootAndFinish: vagga's builder gives every container /etc,
// /dev, /proc, /run, /sys, /tmp and /work (so a first !Text writes
// /etc/x), and at the end of a build empties /etc/resolv.conf and
// /etc/hosts, removes every !Remove path again (a later step or a
// !Container child that brings it back loses it), empties every
// !EmptyDir and /tmp, /var/tmp again, and makes every !EnsureDir; a
// container with data-dirs keeps only those (build_steps.rst,
// build_commands.rst, container_params.rst).
func TestBuildRootAndFinish(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		dir := project(t, `
containers:
  parent:
    setup:
    - !Text {/etc/x: "x"}
    - !EnsureDir /var/tmp
    - !Text {/etc/hosts: "127.0.0.1 build-time\n", /var/tmp/scratch: "s", /tmp/t: "t"}
    - !Remove /var/cache/junk
    - !Copy {source: /work/late, path: /var/cache/junk/late}
    - !EmptyDir /srv/empty
    - !Text {/srv/empty/late: "written after the !EmptyDir"}
    - !EnsureDir /srv/made
    - !Text {/srv/made/f: "f"}
  child:
    setup:
    - !Container parent
    - !Copy {source: /work/late, path: /var/cache/junk/again}
    - !Remove /srv/made/f
  data:
    setup:
    - !EnsureDir /var/lib/db
    - !Text {/var/lib/db/data: "d", /var/lib/other: "o", /etc/conf: "c"}
    data-dirs: [/var/lib/db]
  empty: {}
`, map[string]string{"late": "written after the !Remove"})
		r, _ := mustBuild(t, dir, "parent", Options{})
		mustContain(t, r.Root, "etc/x", "x")
		mustContain(t, r.Root, "etc/hosts", "")
		mustContain(t, r.Root, "etc/resolv.conf", "")
		for _, d := range []string{"dev", "proc", "run", "sys", "tmp", "work", "srv/made", "srv/empty", "var/tmp"} {
			mustContain(t, r.Root, d, "")
		}
		mustBeGone(t, r.Root, "var/cache/junk", "srv/empty/late", "var/tmp/scratch", "tmp/t")
		mustContain(t, r.Root, "srv/made/f", "f")

		c, _ := mustBuild(t, dir, "child", Options{})
		mustBeGone(t, c.Root, "var/cache/junk", "srv/made/f")
		mustContain(t, c.Root, "srv/made", "")
		mustContain(t, c.Root, "etc/x", "x")

		d, _ := mustBuild(t, dir, "data", Options{})
		mustContain(t, d.Root, "var/lib/db/data", "d")
		mustBeGone(t, d.Root, "var/lib/other", "etc", "tmp", "work")

		e, _ := mustBuild(t, dir, "empty", Options{})
		if got := strings.Join(listTree(t, e.Root), " "); got != "dev etc etc/hosts etc/resolv.conf proc run sys tmp work" {
			t.Errorf("a container with no steps has %s", got)
		}
		if st := statT(t, filepath.Join(e.Root, "tmp")); st.Mode&0o7777 != 0o1777 {
			t.Errorf("/tmp mode %o, want 1777", st.Mode&0o7777)
		}
	})
}
