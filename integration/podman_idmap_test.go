package integration

import (
	"sort"
	"strconv"
	"strings"
	"testing"
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
			fail := t.Fatalf
			if c.name == "fuse-overlayfs" {
				fail = t.Skipf // a peer: recorded, not ours to fix
			}
			run := func(args ...string) string {
				out, err := p.run("", args...)
				if err != nil {
					fail("%v", err)
				}
				return out
			}
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
