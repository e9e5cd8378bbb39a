package fusefs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

func TestIDMapTranslation(t *testing.T) {
	// podman's rootless --userns=keep-id map for uid 1002, in
	// fuse-overlayfs's order: container (disk) id, host (shown) id, size.
	keepID := []layer.IDMapping{{Container: 0, Host: 1, Size: 1002}, {Container: 1002, Host: 0, Size: 1}, {Container: 1003, Host: 1003, Size: 64533}}
	cases := []struct {
		ms          []layer.IDMapping
		disk, shown uint32
		back        bool // shown maps back to disk
	}{
		{nil, 1234, 1234, true},
		{keepID, 0, 1, true},
		{keepID, 1001, 1002, true},
		{keepID, 1002, 0, true},
		{keepID, 1003, 1003, true},
		{keepID, 65535, 65535, true},
		{keepID, 65536, overflowID, false}, // no range holds it: nobody
		{[]layer.IDMapping{{Container: 0, Host: 200000, Size: 65536}}, 0, 200000, true},
		{[]layer.IDMapping{{Container: 0, Host: 200000, Size: 65536}}, 4294967295, overflowID, false},
	}
	for _, c := range cases {
		if got := diskToShown(c.ms, c.disk); got != c.shown {
			t.Errorf("%s: disk %d shows as %d, want %d", layer.FormatIDMapping(c.ms), c.disk, got, c.shown)
		}
		if !c.back {
			continue
		}
		if got, ok := shownToDisk(c.ms, c.shown); !ok || got != c.disk {
			t.Errorf("%s: shown %d goes to disk %d (%v), want %d", layer.FormatIDMapping(c.ms), c.shown, got, ok, c.disk)
		}
	}
	if _, ok := shownToDisk(keepID, 70000); ok {
		t.Errorf("shown 70000 maps to the disk through %s, which shows no such id", layer.FormatIDMapping(keepID))
	}
}

// idmapBase is the host range a container's ids 0-65535 show as in
// TestIDMapOwners, as podman's `--uidmap 0:200000:65536`.
const idmapBase = 200000

// idmapSpec is the mapping of TestIDMapOwners, for uids and gids alike:
// the container's ids as podman's `--uidmap 0:200000:65536`, and host root
// (which kernel overlay needs to write its work dir) as disk id 100000.
var idmapSpec = []layer.IDMapping{{Container: 0, Host: idmapBase, Size: 65536}, {Container: 100000, Host: 0, Size: 1}}

// TestIDMapOwners mounts a stack with uidmapping=gidmapping=0:200000:65536
// and checks what the mount shows and what lands on disk: stat owners,
// chown, new files of a mapped caller, copy-up, and the refusals, against
// kernel overlay on idmapped layers (mount_setattr MOUNT_ATTR_IDMAP with
// the same map), which does in the kernel what the option does in a FUSE
// union.
func TestIDMapOwners(t *testing.T) {
	idmapSameAsKernel(t, func(t *testing.T, s *stack) {
		for _, f := range []struct {
			p  string
			id int
		}{{"root", 0}, {"user", 1000}, {"high", 70000}, {"hostroot", 100000}, {"dir/", 7}, {"dir/f", 7}, {"pub/", 0}} {
			full := filepath.Join(s.lowers[0], strings.TrimSuffix(f.p, "/"))
			if strings.HasSuffix(f.p, "/") {
				must(0, os.Mkdir(full, 0o755))
			} else {
				must(0, os.WriteFile(full, []byte(f.p), 0o644))
			}
			must(0, os.Lchown(full, f.id, f.id+1))
		}
		must(0, os.Chmod(filepath.Join(s.lowers[0], "pub"), 0o777))
	}, func(t *testing.T, s *stack, kernel bool) string {
		got := idmapScenario(t, s)
		unmappedCaller(t, s, kernel)
		return got
	})
}

// idmapSameAsKernel builds a one-lower stack with build, in a directory
// every uid can reach, mounts it with idmapSpec on kernel overlay over
// idmapped layers and on fusefs, runs do on each, and fails unless fusefs
// gives what the kernel gives.
func idmapSameAsKernel(t *testing.T, build func(t *testing.T, s *stack), do func(t *testing.T, s *stack, kernel bool) string) {
	testutil.RequireRoot(t)
	var want string
	for _, m := range []string{"kernel", "fusefs"} {
		t.Run(m, func(t *testing.T) {
			s := newStack(t, testutil.SharedDir(t), 1)
			build(t, s)
			if m == "kernel" {
				mountKernelIDMapped(t, s, idmapSpec)
			} else {
				spec := s.spec()
				spec.UIDMapping, spec.GIDMapping = idmapSpec, idmapSpec
				mountFuse(t, spec)
			}
			got := do(t, s, m == "kernel")
			if m == "kernel" {
				want = got
				t.Logf("kernel:\n%s", got)
				return
			}
			if got != want {
				t.Errorf("fusefs:\n%s\nkernel:\n%s", got, want)
			}
		})
	}
}

// idmapScenario runs TestIDMapOwners's operations on the mounted stack s
// and returns, one line each, what the mount showed, what each change
// returned and the owners on disk after.
func idmapScenario(t *testing.T, s *stack) string {
	var b strings.Builder
	mnt := func(p string) string { return filepath.Join(s.target, p) }
	owner := func(p string) string {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return errName(err)
		}
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	for _, p := range []string{"", "root", "user", "high", "hostroot", "dir", "dir/f"} {
		fmt.Fprintf(&b, "stat %s: %s\n", p, owner(mnt(p)))
	}
	// chown through the mount: a shown id goes to the disk as its
	// container id; one the map does not show is refused and nothing
	// is copied up.
	fmt.Fprintf(&b, "chown user 201005:201006: %s\n", errName(os.Lchown(mnt("user"), idmapBase+1005, idmapBase+1006)))
	fmt.Fprintf(&b, "chown root 5:-1: %s\n", errName(os.Lchown(mnt("root"), 5, -1)))
	fmt.Fprintf(&b, "chown root -1:70000: %s\n", errName(os.Lchown(mnt("root"), -1, 70000)))
	// Copy-up keeps the owner on disk.
	fmt.Fprintf(&b, "chmod high: %s\n", errName(os.Chmod(mnt("high"), 0o600)))
	// Host root is shown by the second range.
	fmt.Fprintf(&b, "create as 0: %s %s\n", errName(os.WriteFile(mnt("pub/byroot"), nil, 0o644)), owner(mnt("pub/byroot")))
	// A mapped caller (container uid 7, gid 8, the owner of dir) creates
	// each kind of file; each lands on disk as 7:8.
	out, err := exec.Command("setpriv", fmt.Sprintf("--reuid=%d", idmapBase+7), fmt.Sprintf("--regid=%d", idmapBase+8), "--clear-groups",
		"sh", "-c", `cd "$1" && echo x > new && mkdir newd && ln -s new newl && mkfifo newp && ln new newh && echo y >> f && mv f g`, "sh", mnt("dir")).CombinedOutput()
	fmt.Fprintf(&b, "as %d: %v %s\n", idmapBase+7, err, strings.TrimSpace(string(out)))
	for _, p := range []string{"dir/new", "dir/newd", "dir/newl", "dir/newp", "dir/newh", "dir/g"} {
		fmt.Fprintf(&b, "stat %s: %s\n", p, owner(mnt(p)))
	}
	fmt.Fprintf(&b, "stat dir/f: %s\n", owner(mnt("dir/f")))
	// On disk: the upper holds container ids; the lower is untouched.
	var upper []string
	filepath.Walk(s.upper, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == s.upper {
			return err
		}
		rel, _ := filepath.Rel(s.upper, p)
		o := owner(p)
		if fi.Mode()&os.ModeCharDevice != 0 {
			o = "whiteout" // made with the mounter's ids: the kernel's own
		}
		upper = append(upper, fmt.Sprintf("%s=%s", rel, o))
		return nil
	})
	fmt.Fprintf(&b, "upper: %s\n", strings.Join(upper, " "))
	fmt.Fprintf(&b, "lower: user=%s root=%s high=%s\n", owner(filepath.Join(s.lowers[0], "user")),
		owner(filepath.Join(s.lowers[0], "root")), owner(filepath.Join(s.lowers[0], "high")))
	return b.String()
}

// unmappedCaller has a caller the map does not show (uid 5) create
// files where the permissions let it: the kernel refuses it on an
// idmapped layer (EOVERFLOW); the union, as fuse-overlayfs, gives the
// files the overflow id on disk (podman's rootful --uidmap needs it: see
// idmap.go).
func unmappedCaller(t *testing.T, s *stack, kernel bool) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid=5", "--regid=5", "--clear-groups",
		"sh", "-c", `cd "$1" && echo x > new5 && mkdir newd5 && ln -s x newl5`, "sh", filepath.Join(s.target, "pub")).CombinedOutput()
	if kernel {
		if err == nil || !strings.Contains(string(out), "Value too large") {
			t.Errorf("as uid 5 on kernel overlay: %v %s, want EOVERFLOW", err, out)
		}
		return
	}
	if err != nil {
		t.Fatalf("as uid 5: %v %s", err, out)
	}
	for _, p := range []string{"new5", "newd5", "newl5"} {
		var shown, disk unix.Stat_t
		must(0, unix.Lstat(filepath.Join(s.target, "pub", p), &shown))
		must(0, unix.Lstat(filepath.Join(s.upper, "pub", p), &disk))
		if shown.Uid != idmapBase+overflowID || shown.Gid != idmapBase+overflowID || disk.Uid != overflowID || disk.Gid != overflowID {
			t.Errorf("pub/%s of uid 5: shown %d:%d, on disk %d:%d; want %d:%d and %d:%d", p, shown.Uid, shown.Gid, disk.Uid, disk.Gid,
				idmapBase+overflowID, idmapBase+overflowID, overflowID, overflowID)
		}
	}
}

func errName(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	default:
		return err.Error()
	}
}

// idmappedBind binds dir on a fresh directory through the mapping ms
// (a user namespace with uid_map and gid_map ms, MOUNT_ATTR_IDMAP), so
// that disk id Container shows there as Host, and returns that directory;
// unmounted when the test ends. It skips t where the kernel or the
// filesystem has no idmapped mounts.
func idmappedBind(t *testing.T, dir string, ms []layer.IDMapping) string {
	t.Helper()
	var maps []syscall.SysProcIDMap
	for _, m := range ms {
		maps = append(maps, syscall.SysProcIDMap{ContainerID: int(m.Container), HostID: int(m.Host), Size: int(m.Size)})
	}
	holder := exec.Command("sleep", "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: maps, GidMappings: maps}
	if err := holder.Start(); err != nil {
		t.Fatalf("user namespace for the idmapped mount: %v", err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	nsfd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/user", holder.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nsfd)
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatalf("open_tree %s: %v", dir, err)
	}
	defer unix.Close(tree)
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsfd)}); err != nil {
		t.Skipf("idmapped mounts of %s: %v", dir, err)
	}
	idm := t.TempDir()
	testutil.CleanupMount(t, idm)
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, idm, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatalf("move_mount %s: %v", idm, err)
	}
	return idm
}

// mountKernelIDMapped mounts s with kernel overlay on idmapped copies of
// its directories (idmappedBind of s.dir through ms): the lowers, upper
// and work are taken from there, and the overlay shows and writes owners
// through the mapping.
func mountKernelIDMapped(t *testing.T, s *stack, ms []layer.IDMapping) {
	t.Helper()
	idm := idmappedBind(t, s.dir, ms)
	in := func(p string) string { return filepath.Join(idm, strings.TrimPrefix(p, s.dir)) }
	var lowers []string
	for _, l := range s.lowers {
		lowers = append(lowers, in(l))
	}
	mountKernel(t, layer.Spec{Lowers: lowers, Upper: in(s.upper), Work: in(s.work), Target: s.target})
}

// TestIDMapIDMappedLower mounts with a mapping a lower that is on an
// idmapped mount of the same map, as Debian's podman 4.3 hands them to a
// mount program with --uidmap: its owners show once through the map, not
// twice (the overflow id), and a copy-up from it lands in the upper with
// the ids on disk.
func TestIDMapIDMappedLower(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStack(t, t.TempDir(), 1)
	f := filepath.Join(s.lowers[0], "f")
	must(0, os.WriteFile(f, []byte("x"), 0o644))
	must(0, os.Chown(f, 1000, 1001))
	must(0, os.Mkdir(filepath.Join(s.lowers[0], "d"), 0o755))
	must(0, os.Chown(filepath.Join(s.lowers[0], "d"), 7, 8))
	spec := s.spec()
	spec.Lowers = []string{idmappedBind(t, s.lowers[0], idmapSpec)}
	spec.UIDMapping, spec.GIDMapping = idmapSpec, idmapSpec
	mountFuse(t, spec)
	var st unix.Stat_t
	for p, want := range map[string][2]uint32{"f": {idmapBase + 1000, idmapBase + 1001}, "d": {idmapBase + 7, idmapBase + 8}} {
		must(0, unix.Lstat(filepath.Join(s.target, p), &st))
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%q from an idmapped lower shows as %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
	}
	must(0, os.Chmod(filepath.Join(s.target, "f"), 0o600))
	must(0, unix.Lstat(filepath.Join(s.upper, "f"), &st))
	if st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("copy-up from an idmapped lower: %d:%d in the upper, want the ids on disk 1000:1001", st.Uid, st.Gid)
	}
	must(0, unix.Lstat(filepath.Join(s.target, "f"), &st))
	if st.Uid != idmapBase+1000 {
		t.Errorf("f after copy-up shows as %d, want %d", st.Uid, idmapBase+1000)
	}
}

// aclXattr builds a system.posix_acl_access value: owner rw, named user
// uid rw, named group gid r, mask rw, other r.
func aclXattr(uid, gid uint32) []byte {
	b := []byte{aclVersion, 0, 0, 0}
	add := func(tag, perm uint16, id uint32) {
		b = append(b, byte(tag), byte(tag>>8), byte(perm), byte(perm>>8), byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
	}
	add(0x01, 6, 0xffffffff) // ACL_USER_OBJ
	add(aclUser, 6, uid)
	add(0x04, 4, 0xffffffff) // ACL_GROUP_OBJ
	add(aclGroup, 4, gid)
	add(0x10, 6, 0xffffffff) // ACL_MASK
	add(0x20, 4, 0xffffffff) // ACL_OTHER
	return b
}

// aclIDs returns the named user and group of an ACL value ("u:g").
func aclIDs(b []byte) string {
	var out []string
	for off := aclHeader; off+aclEntry <= len(b); off += aclEntry {
		tag := uint16(b[off]) | uint16(b[off+1])<<8
		id := uint32(b[off+4]) | uint32(b[off+5])<<8 | uint32(b[off+6])<<16 | uint32(b[off+7])<<24
		if tag == aclUser || tag == aclGroup {
			out = append(out, fmt.Sprint(id))
		}
	}
	return strings.Join(out, ":")
}

// TestIDMapACL: the named users and groups of POSIX ACLs go through the
// mapping as owners do, read and written, as on kernel overlay over
// idmapped layers.
func TestIDMapACL(t *testing.T) {
	idmapSameAsKernel(t, func(t *testing.T, s *stack) {
		f := filepath.Join(s.lowers[0], "f")
		must(0, os.WriteFile(f, []byte("x"), 0o644))
		if err := unix.Setxattr(f, aclAccess, aclXattr(1000, 1001), 0); err != nil {
			t.Skipf("ACLs on %s: %v", s.lowers[0], err)
		}
	}, func(t *testing.T, s *stack, kernel bool) string {
		var b strings.Builder
		read := func(p string) string {
			buf := make([]byte, 256)
			n, err := unix.Getxattr(p, aclAccess, buf)
			if err != nil {
				return errName(err)
			}
			return aclIDs(buf[:n])
		}
		mf := filepath.Join(s.target, "f")
		fmt.Fprintf(&b, "read: %s\n", read(mf))
		fmt.Fprintf(&b, "set 200005:200006: %s\n", errName(unix.Setxattr(mf, aclAccess, aclXattr(idmapBase+5, idmapBase+6), 0)))
		fmt.Fprintf(&b, "read: %s, upper: %s\n", read(mf), read(filepath.Join(s.upper, "f")))
		fmt.Fprintf(&b, "set 5:6: %s\n", errName(unix.Setxattr(mf, aclAccess, aclXattr(5, 6), 0)))
		fmt.Fprintf(&b, "read: %s, upper: %s\n", read(mf), read(filepath.Join(s.upper, "f")))
		return b.String()
	})
}
