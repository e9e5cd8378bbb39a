package builder

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// cloneProject is a parent with a few files and a child that changes
// them in every way: deletes one, replaces one, appends to one, chmods
// one (a metadata-only change), replaces a directory by a file and adds
// its own.
const cloneProject = `
containers:
  parent:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Text {/etc/a: a, /etc/b: b, /etc/c: c, /etc/d: d}
    - !Copy {source: /work/dir, path: /opt/dir}
  child:
    setup:
    - !Container parent
    - !Remove /etc/a
    - !Text {/etc/b: replaced}
    - !Sh "chmod 600 /etc/c; echo more >> /etc/d; rm -r /opt/dir; echo file > /opt/dir"
    - !Text {/etc/child: yes}
`

func diffTree(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s:", what)
	for _, l := range got {
		if !slices.Contains(want, l) {
			t.Errorf("  only in got:  %s", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("  only in want: %s", l)
		}
	}
}

func inode(t *testing.T, p string) uint64 { return statT(t, p).Ino }

// rootDetail returns the Detail of the StatusRoot event of container.
func rootDetail(rec *recorder, container string) string {
	for _, e := range rec.events {
		if e.Status == StatusRoot && e.Container == container {
			return e.Detail
		}
	}
	return ""
}

// A child's root is its parent's root cloned with hard links plus the
// child's own layers: it equals the flatten of the whole stack, the
// parent's root is left exactly as it was (nothing written through a
// link), and the files the child did not change are the parent's.
func TestChildRootClonesParentRoot(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		dir := project(t, cloneProject, map[string]string{"dir/x": "x"})
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		var out bytes.Buffer
		opts := runOpts(decision(t, backend.Native), dir, &out)
		parent, _ := mustBuild(t, dir, "parent", opts)
		before := testutil.FullTreeListing(t, parent.Root)

		rec := &recorder{}
		opts.Events = rec.add
		child, err := New(load(t, dir), opts).Build(context.Background(), "child")
		if err != nil {
			t.Fatalf("build child: %v\n%s", err, out.String())
		}
		if d := rootDetail(rec, "child"); !strings.HasPrefix(d, "cloned parent's root") {
			t.Errorf("child's root was not cloned from the parent's: %q", d)
		}
		diffTree(t, "parent's root changed by building the child", testutil.FullTreeListing(t, parent.Root), before)

		want := filepath.Join(t.TempDir(), "flat")
		if err := layer.Flatten(context.Background(), child.Layers, want); err != nil {
			t.Fatal(err)
		}
		diffTree(t, "child's root differs from the flatten of its stack", testutil.FullTreeListing(t, child.Root), testutil.FullTreeListing(t, want))
		mustContain(t, child.Root, "etc/d", "dmore\n")
		mustContain(t, child.Root, "opt/dir", "file\n")
		if m := statT(t, filepath.Join(child.Root, "etc/c")).Mode & 0o777; m != 0o600 {
			t.Errorf("child's /etc/c mode %o, want 600", m)
		}
		for _, p := range []string{"bin/busybox", "etc/passwd"} {
			if a, b := inode(t, filepath.Join(parent.Root, p)), inode(t, filepath.Join(child.Root, p)); a != b {
				t.Errorf("%s: unchanged by the child, but not shared with the parent's root (inode %d vs %d)", p, a, b)
			}
		}
		for _, p := range []string{"etc/b", "etc/c", "etc/d"} {
			if inode(t, filepath.Join(parent.Root, p)) == inode(t, filepath.Join(child.Root, p)) {
				t.Errorf("%s: changed by the child, but still the parent's file", p)
			}
		}

		// Without the parent's root, the child's root is flattened from
		// all its layers, to the same tree.
		cloned := testutil.FullTreeListing(t, child.Root)
		aside := filepath.Join(dir, ".vagga", "parent-root-aside")
		if err := os.Rename(filepath.Dir(parent.Root), aside); err != nil {
			t.Fatal(err)
		}
		if err := removeAll(filepath.Dir(child.Root)); err != nil {
			t.Fatal(err)
		}
		rec.events = nil
		b := New(load(t, dir), opts)
		if _, err := b.writeRoot(context.Background(), child); err != nil {
			t.Fatal(err)
		}
		if d := rootDetail(rec, "child"); !strings.HasPrefix(d, "flattened into") {
			t.Errorf("child's root without the parent's root: %q, want flattened", d)
		}
		diffTree(t, "flattened child root differs from the cloned one", testutil.FullTreeListing(t, child.Root), cloned)
	})
}
