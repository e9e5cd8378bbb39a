package kerneltest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// keptChanges are made in a writable run whose changes are kept, on each
// backend that writes its own layers: a lower file deleted, a lower
// directory deleted and made again (opaque, or its old entries whited
// out), a new file. The run lists /etc afterwards.
const keptChanges = "rm /etc/hostname && rm -r /etc/sub && mkdir /etc/sub && echo n > /etc/sub/new && find /etc | sort"

// keptBackends write the layers of keepLayers: the kernel writes its own
// whiteouts, these two write the layer package's.
var keptBackends = []string{"fuse", "copy"}

// keepLayers runs keptChanges on each of keptBackends, keeping the
// changes in dir/kept-BACKEND, and records what the run listed in
// dir/kept-BACKEND.tree, with the root's path in dir/kept-root, for
// checkKeptLayers.
func keepLayers(t *testing.T, o ovl, dir, root string) {
	for _, b := range keptBackends {
		kept := filepath.Join(dir, "kept-"+b)
		out, _, code := o.run(dir, "run", "--backend", b, "--writable", "--keep-changes", kept, root, "--", "sh", "-c", keptChanges)
		if code != 0 {
			t.Errorf("ovl run --backend %s --keep-changes: exit %d", b, code)
			continue
		}
		if err := os.WriteFile(kept+".tree", []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kept-root"), []byte(root), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkKeptLayers mounts each layer keepLayers kept (under a simulated
// kernel that refused 0/0 whiteout devices, so they hold xattr whiteouts)
// on its root with kernel overlay here, with `ovl mount --backend native`
// (user.* metadata for a layer uid 65534 kept), and checks it shows the
// tree the run saw. Nothing to do for a cell that kept none.
func checkKeptLayers(t *testing.T, bin, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "kept-root"))
	if err != nil {
		return
	}
	root := string(b)
	o := ovl{t: t, bin: bin, env: []string{"OVL_RUNTIME_DIR=" + filepath.Join(dir, "run-here"), "OVL_STATE_DIR=" + filepath.Join(dir, "state-here")}}
	for _, backend := range keptBackends {
		kept := filepath.Join(dir, "kept-"+backend)
		want, err := os.ReadFile(kept + ".tree")
		if err != nil {
			t.Errorf("the run on %s kept no tree: %v", backend, err)
			continue
		}
		target := filepath.Join(dir, "kept-mnt-"+backend)
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		opts := "lowerdir=" + kept + ":" + root
		if owner := fileOwner(t, kept); owner != 0 {
			opts += ",userxattr"
		}
		testutil.CleanupMount(t, target)
		if _, _, code := o.run(dir, "mount", "--backend", "native", "-o", opts, target); code != 0 {
			t.Errorf("kernel overlay refused the layer kept on %s", backend)
			continue
		}
		got := testutil.TreeListing(t, filepath.Join(target, "etc"))
		o.run(dir, "umount", target)
		var wantNames []string
		for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
			if rel, ok := strings.CutPrefix(line, "/etc/"); ok {
				wantNames = append(wantNames, rel)
			}
		}
		var gotNames []string
		for _, line := range got {
			name, _, _ := strings.Cut(line, " ")
			if name != "." {
				gotNames = append(gotNames, name)
			}
		}
		slices.Sort(gotNames)
		if !slices.Equal(gotNames, wantNames) {
			t.Errorf("the layer kept on %s under %s, mounted with kernel overlay here: /etc holds %q, the run saw %q", backend, "no-mknod", gotNames, wantNames)
		}
	}
}

// fileOwner is the uid owning p.
func fileOwner(t *testing.T, p string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}
