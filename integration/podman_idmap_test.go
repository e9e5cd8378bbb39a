package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// uidmapArgs run a rootful container in a user namespace of its own, its
// ids 0-65535 the host's 200000-265535: podman hands a mount program
// uidmapping=0:200000:65536,gidmapping=0:200000:65536 and leaves the
// layers' owners as they are; kernel overlay gets layers chowned for it.
var uidmapArgs = []string{"--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"}

// unshiftOwners maps the owners of a listing (tarListing) in the host
// range [base, base+size) back to the container's ids. podman 4.3 on
// kernel overlay commits a --uidmap container's changed files with the
// host's ids (its upper is written through no mapping, and its diff is
// not mapped back); with a mount program the upper holds the container's
// ids, as an image should. Comparing the two then needs the kernel's
// listing taken back to the container's ids.
func unshiftOwners(lines []string, base, size int) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		f := strings.SplitN(l, " ", 5)
		if len(f) < 4 {
			out[i] = l
			continue
		}
		ids := strings.Split(f[3], ":")
		for j, id := range ids {
			if n, err := strconv.Atoi(id); err == nil && n >= base && n < base+size {
				ids[j] = strconv.Itoa(n - base)
			}
		}
		f[3] = strings.Join(ids, ":")
		out[i] = strings.Join(f, " ")
	}
	sort.Strings(out)
	return out
}

// stopOnFailure returns run, which runs podman and returns its output,
// and fail, which run calls when podman fails: t.Fatalf, or t.Skipf for
// fuse-overlayfs, a peer whose failures are recorded, not ours to fix.
func (p *podman) stopOnFailure(t *testing.T) (run func(args ...string) string, fail func(format string, args ...any)) {
	fail = t.Fatalf
	if p.name == "fuse-overlayfs" {
		fail = t.Skipf
	}
	run = func(args ...string) string {
		out, err := p.run("", args...)
		if err != nil {
			fail("%v", err)
		}
		return out
	}
	return run, fail
}

// TestPodmanRootfulUIDMap runs rootful podman with `--uidmap
// 0:200000:65536`: a container that changes every kind of file (as
// TestPodmanRootful, chown included), `podman commit`, and a process as
// a non-root uid of the container reading and writing what its
// permissions allow. The committed image must list the same files, owners
// included, as on kernel overlay (whose owners are taken back from the
// host's ids: unshiftOwners). fuse-overlayfs is run alongside for the
// record: it cannot start the container (this podman hands it idmapped
// lowers and the mapping, which it applies twice; see fusefs/idmap.go),
// which is logged as a skip, not ours to fix.
func TestPodmanRootfulUIDMap(t *testing.T) {
	requirePodman(t)
	base := baseRoot(t)
	committed := map[string][]string{}
	for _, c := range contestants() {
		t.Run(c.name, func(t *testing.T) {
			p := newPodman(t, c.name, c.mountProgram(t))
			p.importRoot(base, "localhost/base")
			run, fail := p.stopOnFailure(t)
			out := run(append(append([]string{"run", "--name", "changer"}, uidmapArgs...),
				"localhost/base", "sh", "-c", "cat /proc/self/uid_map && "+changeScript)...)
			if !strings.Contains(out, "200000") {
				t.Errorf("the container's uid_map does not map 200000:\n%s", out)
			}
			run("commit", "changer", "localhost/committed")
			committed[c.name] = p.listing("localhost/committed")
			if c.name == "kernel" {
				committed[c.name] = unshiftOwners(committed[c.name], 200000, 65536)
			}

			out, err := p.run("", append(append([]string{"run", "--rm", "--user", "65534:65534"}, uidmapArgs...),
				"localhost/base", "sh", "-c", asNobody)...)
			if err != nil || !strings.Contains(out, "nobody-ok") {
				fail("as uid 65534 in the container: %v\n%s", err, out)
			}
		})
	}
	compareWithKernel(t, "podman commit --uidmap", committed)
}

// Where TestPodmanRootlessKeepID's unprivileged half finds what its
// privileged half made for it.
const (
	envRootlessBase = "OVL_TEST_PODMAN_BASE_TAR"
	envRootlessOvl  = "OVL_TEST_PODMAN_OVL"
)

// viewScript lists, from inside a container, the files changeScript
// touches and their neighbours as the container sees them: type, mode,
// owner, link count, size (no times, no inode numbers).
const viewScript = `find /data /home /tmp /etc/motd /etc/passwd /etc/secret -xdev | sort | while read -r f; do stat -c '%n %F %a %u:%g %h %s' "$f"; done`

// TestPodmanRootlessKeepID runs rootless podman as uid 65534 with the
// subordinate ids 200000-265535 (testutil.RunAsNobodyWithSubIDs), with
// --userns=keep-id: the user's own uid is the container's 65534, and
// podman hands a mount program uidmapping=/gidmapping= of that map. A
// container as its root changes every kind of file (changeScript: its
// chown gives a file to the user) and lists what it sees (viewScript),
// `podman commit`, and a process as the user (uid 65534 in the container)
// reads and writes what its permissions allow. What the container sees
// must be what it sees on kernel overlay, which rootless podman mounts in
// its user namespace, and so must the committed image, but for what
// podman 4.3 itself does with any mount program there (committedAsKernel).
// Then `podman build` of the multi-RUN Containerfile (in the user's own
// namespace, no keep-id) must list as on kernel overlay too.
// fuse-overlayfs is run alongside for the record.
func TestPodmanRootlessKeepID(t *testing.T) {
	if !testutil.InNobodyChild() {
		requirePodman(t)
		for _, prog := range []string{"newuidmap", "newgidmap"} {
			if _, err := exec.LookPath(prog); err != nil {
				t.Fatalf("%s is not installed (package uidmap; make test-integration installs it): %v", prog, err)
			}
		}
		dir := testutil.SharedDir(t)
		tarball := filepath.Join(dir, "base.tar")
		out, err := exec.Command("tar", "--numeric-owner", "--xattrs", "-C", baseRoot(t), "-cf", tarball, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("tar the base root: %v\n%s", err, out)
		}
		if err := os.Chmod(tarball, 0o644); err != nil {
			t.Fatal(err)
		}
		testutil.RunAsNobodyWithSubIDs(t, envRootlessBase+"="+tarball, envRootlessOvl+"="+ovlBinary(t))
		return
	}
	// As uid 65534, with the subordinate ids.
	programs := map[string]string{"kernel": "", "ovl": os.Getenv(envRootlessOvl)}
	if p, err := exec.LookPath("fuse-overlayfs"); err == nil {
		programs["fuse-overlayfs"] = p
	}
	views := map[string]string{}
	committed := map[string][]string{}
	built := map[string][]string{}
	var uidMap string
	for _, name := range []string{"kernel", "ovl", "fuse-overlayfs"} {
		prog, ok := programs[name]
		if !ok {
			continue
		}
		t.Run(name, func(t *testing.T) {
			p := newPodman(t, name, prog)
			xdg := filepath.Join(p.dir, "xdg")
			if err := os.Mkdir(xdg, 0o700); err != nil {
				t.Fatal(err)
			}
			p.env = append(p.env, "HOME="+p.dir, "XDG_RUNTIME_DIR="+xdg)
			run, fail := p.stopOnFailure(t)
			run("import", os.Getenv(envRootlessBase), "localhost/base")
			uidMap = run("run", "--rm", "--userns=keep-id", "localhost/base", "cat", "/proc/self/uid_map")
			views[name] = run("run", "--name", "changer", "--userns=keep-id", "--user", "0:0", "localhost/base",
				"sh", "-c", changeScript+viewScript)
			run("commit", "changer", "localhost/committed")
			committed[name] = p.listing("localhost/committed")

			out, err := p.run("", "run", "--rm", "--userns=keep-id", "localhost/base", "sh", "-c", asNobody)
			if err != nil || !strings.Contains(out, "nobody-ok") {
				fail("as the user (uid 65534) in the container: %v\n%s", err, out)
			}

			ctx := filepath.Join(p.dir, "ctx")
			if err := os.Mkdir(ctx, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			run("build", "--network", "none", "--layers", "-t", "localhost/built", "-f", filepath.Join(ctx, "Containerfile"), ctx) // no slirp4netns (no /dev/net/tun here)
			built[name] = p.listing("localhost/built")
		})
	}
	t.Logf("the containers' uid_map:\n%s", uidMap)
	for name, view := range views {
		views[name] = dirLinksLeftOut(view)
	}
	for name, view := range views {
		if name != "kernel" && view != views["kernel"] {
			report := t.Errorf
			if name == "fuse-overlayfs" {
				report = t.Logf
			}
			report("the container on %s sees:\n%s\non kernel overlay:\n%s", name, view, views["kernel"])
		}
	}
	for name, l := range committed {
		if name != "kernel" {
			committed[name] = committedAsKernel(t, l, uidMap)
		}
	}
	if k, ok := committed["kernel"]; ok {
		committed["kernel"] = committedAsKernel(t, k, "")
	}
	compareWithKernel(t, "rootless podman commit --userns=keep-id", committed)
	compareWithKernel(t, "rootless podman build", built)
}

// dirLinksLeftOut writes the link count of each directory in a
// viewScript listing as "-". Rootless podman 4.3 stacks a keep-id
// container differently for kernel overlay than for a mount program: the
// image's layer and a chowned copy of it (a "diff1" directory), so the
// image's directories are merged directories there, which the kernel
// shows with one link, and a mount program gets the one layer, whose
// directories keep their own counts (as on kernel overlay over one).
func dirLinksLeftOut(view string) string {
	lines := strings.Split(view, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) == 6 && f[1] == "directory" {
			f[4] = "-"
			lines[i] = strings.Join(f, " ")
		}
	}
	return strings.Join(lines, "\n")
}

// committedAsKernel undoes in a listing (tarListing) of an image that
// rootless podman 4.3 committed from a --userns=keep-id container on a
// mount program what podman itself does differently there than on kernel
// overlay, the same with ovl as with fuse-overlayfs: the layer holds every
// file with its owner as the mount shows it (the container's id mapped
// through uidMap, "CONTAINER HOST SIZE" lines as /proc/self/uid_map
// writes them), taken back here; and hard links come out as copies, so a
// hard link's line (on either side: uidMap "" for kernel overlay's) is
// written as its target's.
func committedAsKernel(t *testing.T, lines []string, uidMap string) []string {
	t.Helper()
	type rng struct{ c, h, n int }
	var ranges []rng
	for _, l := range strings.Split(strings.TrimSpace(uidMap), "\n") {
		var r rng
		if n, _ := fmt.Sscan(l, &r.c, &r.h, &r.n); n == 3 {
			ranges = append(ranges, r)
		}
	}
	toContainer := func(id string) string {
		n, err := strconv.Atoi(id)
		if err != nil {
			return id
		}
		for _, r := range ranges {
			if n >= r.h && n < r.h+r.n {
				return strconv.Itoa(r.c + n - r.h)
			}
		}
		return id
	}
	byName := map[string][]string{}
	for _, l := range lines {
		f := strings.SplitN(l, " ", 5)
		byName[f[0]] = f
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		f := strings.SplitN(l, " ", 5)
		if len(f) < 4 {
			t.Fatalf("listing line %q", l)
		}
		if f[1] == "1" && len(f) == 5 { // a hard link: "-> TARGET"
			if target, ok := byName["/"+strings.TrimPrefix(strings.TrimPrefix(f[4], "-> "), "/")]; ok {
				f = append([]string{f[0]}, target[1:]...)
			}
		}
		ids := strings.Split(f[3], ":")
		for i := range ids {
			ids[i] = toContainer(ids[i])
		}
		f[3] = strings.Join(ids, ":")
		out = append(out, strings.Join(f, " "))
	}
	sort.Strings(out)
	return out
}
