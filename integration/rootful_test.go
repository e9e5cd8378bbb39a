package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// changeScript is what a container does to the base image's files: each
// kind of change a union must record in its upper: a new file, a deleted
// lower file, a renamed lower directory, a hard link to a lower file, a
// lower directory deleted and made again (fuse-overlayfs 1.10 brings the
// old contents back there), an append, a chmod, an owner change, a set-id
// mode.
const changeScript = `set -e
echo new > /data/new.txt
rm /data/a/file1
mv /data/b /data/b2
ln /data/c/orig /data/c/link
rm -rf /data/d
mkdir /data/d
echo fresh > /data/d/fresh
echo more >> /etc/motd
chmod 600 /data/a/file2
chown 65534:65534 /data/c/orig
touch /data/setid && chmod 4755 /data/setid
`

// containerfile builds in several RUN steps, each a layer podman diffs
// itself (useNativeDiff is off with a mount program).
const containerfile = `FROM localhost/base
RUN mkdir -p /app && echo one > /app/1 && rm /data/a/file1
RUN mv /data/b /data/b2 && ln /data/c/orig /app/hl
RUN rm -rf /data/d && mkdir /data/d && echo two > /data/d/2
RUN chown 65534:65534 /app/1 && chmod 4755 /app/1 && rm /app/hl
RUN rm -rf /data/d && echo three > /data/d
`

// asNobody checks, as uid 65534 inside a container, what its
// permissions allow: reading a world-readable file, writing /tmp and its
// own home, and being refused a root-only file and a root-owned one.
const asNobody = `set -e
test "$(id -u)" = 65534
cat /etc/motd
echo w > /tmp/x && cat /tmp/x
echo h > /home/user/f && cat /home/user/f
if cat /etc/secret 2>/dev/null; then echo "read a root-only file"; exit 1; fi
if echo z 2>/dev/null >> /etc/motd; then echo "wrote a root-owned file"; exit 1; fi
echo nobody-ok
`

// TestPodmanRootful runs rootful podman with ovl as its mount_program:
// a container that changes every kind of file, `podman commit`, `podman
// build` of a multi-RUN Containerfile, and a process as a non-root uid.
// The committed and built images must list the same files as podman on
// kernel overlay; fuse-overlayfs is run alongside for the record.
func TestPodmanRootful(t *testing.T) {
	requirePodman(t)
	base := baseRoot(t)
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	committed := map[string][]string{}
	built := map[string][]string{}
	for _, c := range contestants() {
		t.Run(c.name, func(t *testing.T) {
			p := newPodman(t, c.name, c.mountProgram(t))
			p.importRoot(base, "localhost/base")

			p.must("run", "--name", "changer", "localhost/base", "sh", "-c", changeScript)
			p.must("commit", "changer", "localhost/committed")
			committed[c.name] = p.listing("localhost/committed")

			p.must("build", "--layers", "-t", "localhost/built", "-f", filepath.Join(ctx, "Containerfile"), ctx)
			built[c.name] = p.listing("localhost/built")

			out, err := p.run("", "run", "--rm", "--user", "65534:65534", "localhost/base", "sh", "-c", asNobody)
			if err != nil || !strings.Contains(out, "nobody-ok") {
				t.Errorf("as uid 65534 in the container: %v\n%s", err, out)
			}
		})
	}
	compareWithKernel(t, "podman commit", committed)
	compareWithKernel(t, "podman build", built)
}

// compareWithKernel fails the test where a contestant's image listing
// (listings: contestant -> listing) differs from kernel overlay's;
// fuse-overlayfs's differences are logged, a peer's to fix.
func compareWithKernel(t *testing.T, what string, listings map[string][]string) {
	t.Helper()
	want, ok := listings["kernel"]
	if !ok {
		t.Fatalf("%s: no listing from kernel overlay to compare with", what)
	}
	for name, got := range listings {
		if name == "kernel" {
			continue
		}
		onlyGot, onlyWant := diffListings(got, want)
		if len(onlyGot) == 0 && len(onlyWant) == 0 {
			continue
		}
		report := t.Errorf
		if name == "fuse-overlayfs" {
			report = t.Logf // a peer: recorded, not ours to fix
		}
		report("%s on %s differs from kernel overlay:\nonly on %s:\n  %s\nonly on kernel:\n  %s",
			what, name, name, strings.Join(onlyGot, "\n  "), strings.Join(onlyWant, "\n  "))
	}
}
