package fusefs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// nestedPaths is the setup of TestUpperOnOverlay, handed to the
// unprivileged child.
type nestedPaths struct {
	Lowers []string // shared by both stacks, top first
	Kernel string   // the oracle: kernel overlay, its upper on ext4
	Upper  string   // fusefs's upper and work dir, on an overlay mount
	Work   string
	Target string
}

const envNested = "OVL_TEST_NESTED"

// TestUpperOnOverlay mounts fusefs with its upper and work directory on a
// kernel overlay mount, as in a CI job whose container root is overlayfs,
// as root and as uid 65534, next to a kernel overlay of the same lowers
// with its upper on ext4 (the oracle). Deletes, renames and opaque
// directories must behave alike; the upper holds xattr whiteouts (a 0/0
// device cannot be kept there); and kernel overlay mounting that upper as
// a layer over the lowers shows the oracle's tree.
func TestUpperOnOverlay(t *testing.T) {
	if testutil.InNobodyChild() {
		var p nestedPaths
		mustDo(t, json.Unmarshal([]byte(os.Getenv(envNested)), &p))
		nestedOps(t, p, layer.User)
		return
	}
	for _, who := range []string{"root", "uid 65534"} {
		t.Run(who, func(t *testing.T) {
			testutil.RequireRoot(t)
			dir := testutil.SharedDir(t)
			p := nestedPaths{Kernel: filepath.Join(dir, "k")}
			// Two lowers, uid 65534's: files, nested dirs, a dir to empty
			// and make again, names that look like OCI whiteouts.
			for i, files := range []map[string]string{
				{"a": "a0", "d/x": "x0", "d/sub/deep": "deep", "gone": "g", "keep/k": "k", ".wh.q": "q"},
				{"a": "a1", "b": "b1", "d/y": "y1", "opq/in": "in", "mv": "mv", "lowdir/f": "f"},
			} {
				l := filepath.Join(dir, "l"+string(rune('0'+i)))
				writeFiles(t, l, files)
				p.Lowers = append(p.Lowers, l)
			}
			chownTree(t, dir, 65534)
			// The oracle, mounted by root: its upper on the test's
			// filesystem, whoever works through it.
			ks := layer.Spec{Lowers: p.Lowers, Upper: filepath.Join(dir, "ku"), Work: filepath.Join(dir, "kw"), Target: p.Kernel}
			for _, d := range []string{ks.Upper, ks.Work, ks.Target} {
				mustDo(t, os.Mkdir(d, 0o755))
				mustDo(t, os.Chown(d, 65534, 65534))
			}
			mountKernel(t, ks)
			// The container root: a kernel overlay, whose directory
			// "state" holds fusefs's upper and work dir.
			outer := filepath.Join(dir, "outer")
			os_ := layer.Spec{Lowers: []string{filepath.Join(outer, "l0"), filepath.Join(outer, "l1")}, Upper: filepath.Join(outer, "u"),
				Work: filepath.Join(outer, "w"), Target: filepath.Join(outer, "root")}
			for _, d := range append(os_.Lowers, os_.Upper, os_.Work, os_.Target) {
				mustDo(t, os.MkdirAll(d, 0o755))
			}
			mountKernel(t, os_)
			state := filepath.Join(os_.Target, "state")
			mustDo(t, os.Mkdir(state, 0o777))
			p.Upper, p.Work, p.Target = filepath.Join(state, "up"), filepath.Join(state, "wk"), filepath.Join(dir, "f")
			for _, d := range []string{p.Upper, p.Work, p.Target} {
				mustDo(t, os.Mkdir(d, 0o755))
				mustDo(t, os.Chown(d, 65534, 65534))
			}
			ns := layer.Trusted
			if who == "root" {
				nestedOps(t, p, ns)
			} else {
				ns = layer.User
				b, err := json.Marshal(p)
				mustDo(t, err)
				testutil.RunAsNobody(t, envNested+"="+string(b))
			}

			// What fusefs left is in the kernel's xattr whiteout form.
			var st unix.Stat_t
			mustDo(t, unix.Lstat(filepath.Join(p.Upper, "gone"), &st))
			if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
				t.Errorf("upper/gone is mode %o size %d, want an empty file", st.Mode, st.Size)
			}
			if _, err := unix.Lgetxattr(filepath.Join(p.Upper, "gone"), ns.Xattr(layer.KeyWhiteout), nil); err != nil {
				t.Errorf("upper/gone has no %s: %v", ns.Xattr(layer.KeyWhiteout), err)
			}
			// The kernel reads that layer, through the outer overlay, as
			// the oracle's tree.
			view := filepath.Join(dir, "view")
			mustDo(t, os.Mkdir(view, 0o755))
			opts := layer.MountOptions{Lowers: append([]string{p.Upper}, p.Lowers...), UserXattr: ns == layer.User}.String()
			testutil.CleanupMount(t, view)
			mustDo(t, unix.Mount("overlay", view, "overlay", unix.MS_RDONLY, opts))
			want, got := treeShape(t, p.Kernel), treeShape(t, view)
			if !slices.Equal(want, got) {
				t.Errorf("kernel overlay of fusefs's upper (on overlay) over the lowers:\n got  %q\n want %q (the oracle's)", got, want)
			}
		})
	}
}

// nestedOps mounts fusefs as p says and runs deletes, renames and
// directory re-creations on it and on the oracle, comparing as it goes.
func nestedOps(t *testing.T, p nestedPaths, ns layer.Namespace) {
	spec := layer.Spec{Lowers: p.Lowers, Upper: p.Upper, Work: p.Work, Target: p.Target, Namespace: ns}
	testutil.CleanupMount(t, p.Target)
	m, err := NewBackend().Mount(context.Background(), spec)
	mustDo(t, err)
	o := &oracle{t: t, k: &stack{target: p.Kernel}, f: &stack{target: p.Target}}
	at := func(r, rel string) string { return filepath.Join(r, rel) }
	o.do("unlink gone", func(r string) error { return os.Remove(at(r, "gone")) })
	o.do("unlink b (lower 1 only)", func(r string) error { return os.Remove(at(r, "b")) })
	o.do("rm -rf d", func(r string) error { return os.RemoveAll(at(r, "d")) })
	o.do("mkdir d", func(r string) error { return os.Mkdir(at(r, "d"), 0o755) })
	o.do("create d/new", func(r string) error { return os.WriteFile(at(r, "d/new"), []byte("new"), 0o644) })
	o.do("rm -rf opq", func(r string) error { return os.RemoveAll(at(r, "opq")) })
	o.do("mkdir opq", func(r string) error { return os.Mkdir(at(r, "opq"), 0o755) })
	o.do("rename mv to keep/mv", func(r string) error { return os.Rename(at(r, "mv"), at(r, "keep/mv")) })
	o.do("rename a to a2", func(r string) error { return os.Rename(at(r, "a"), at(r, "a2")) })
	o.do("create a", func(r string) error { return os.WriteFile(at(r, "a"), []byte("again"), 0o644) })
	o.do("rename lowdir (a lower dir)", func(r string) error { return os.Rename(at(r, "lowdir"), at(r, "lowdir2")) })
	o.do("unlink .wh.q", func(r string) error { return os.Remove(at(r, ".wh.q")) })
	o.do("create .wh.gone", func(r string) error { return os.WriteFile(at(r, ".wh.gone"), nil, 0o644) })
	o.do("unlink keep/k", func(r string) error { return os.Remove(at(r, "keep/k")) })
	o.do("rmdir keep (not empty)", func(r string) error { return os.Remove(at(r, "keep")) })
	for _, d := range []string{".", "d", "opq", "keep"} {
		if k, f := listing(t, at(p.Kernel, d)), listing(t, at(p.Target, d)); !slices.Equal(k, f) {
			t.Errorf("listing %s:\n kernel %v\n fusefs %v", d, k, f)
		}
	}
	for _, rel := range []string{"gone", "b", "d/x", "d/sub", "opq/in", "mv", "keep/mv", "a", "a2", "lowdir", ".wh.q", ".wh.gone", "keep/k"} {
		o.do("lstat "+rel, func(r string) error {
			var st unix.Stat_t
			return unix.Lstat(at(r, rel), &st)
		})
	}
	mustDo(t, m.Unmount())
	// A second mount reads the whiteouts the first wrote.
	mountFuse(t, spec)
	for _, d := range []string{".", "d", "opq"} {
		if k, f := listing(t, at(p.Kernel, d)), listing(t, at(p.Target, d)); !slices.Equal(k, f) {
			t.Errorf("listing %s after a remount:\n kernel %v\n fusefs %v", d, k, f)
		}
	}
}

// treeShape lists the tree at dir as a program sees it, without times:
// each path with its mode, owner, size and content.
func treeShape(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	mustDo(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %q", b)
		}
		out = append(out, line)
		return nil
	}))
	return out
}

// chownTree gives everything under dir to uid and gid id.
func chownTree(t *testing.T, dir string, id int) {
	t.Helper()
	mustDo(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, id, id)
	}))
}
