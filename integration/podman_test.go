package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/mountinfo"
	"github.com/ovl-dev/ovl/internal/podmantest"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// podmanTimeout bounds every podman command: a hung mount program must
// fail the test, not CI's 90 minutes.
const podmanTimeout = 3 * time.Minute

// A contestant is one way for podman to mount its layers.
type contestant struct {
	name string
	// mountProgram is storage.conf's mount_program; "" is kernel overlay.
	mountProgram func(t *testing.T) string
}

// contestants are kernel overlay (the oracle), ovl and fuse-overlayfs.
func contestants() []contestant {
	return []contestant{
		{"kernel", func(*testing.T) string { return "" }},
		{"ovl", ovlBinary},
		{"fuse-overlayfs", func(t *testing.T) string {
			p, err := exec.LookPath("fuse-overlayfs")
			if err != nil {
				t.Fatalf("fuse-overlayfs is not installed (make test-integration installs it): %v", err)
			}
			return p
		}},
	}
}

// podman runs Debian's podman with a configuration and a storage of its
// own, rootful, on runc (crun refuses this machine's hybrid cgroups), with
// no network namespace and ulimits that need no CAP_SYS_RESOURCE.
type podman struct {
	t    *testing.T
	name string
	dir  string
	env  []string
}

// newPodman sets up a podman whose overlay storage mounts through
// mountProgram ("" for kernel overlay), configured by podmantest.
// Everything it makes is under a short directory of its own in /tmp (a
// t.TempDir path is too long for conmon's sockets: podman would wait 20 s
// at every container's exit), reset, unmounted and removed at the end.
func newPodman(t *testing.T, name, mountProgram string) *podman {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ovlpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove podman's directory: %v", err)
		}
	})
	p := &podman{t: t, name: name, dir: dir}
	env, err := podmantest.WriteConfig(dir, mountProgram)
	if err != nil {
		t.Fatal(err)
	}
	p.env = append(os.Environ(), env...)
	t.Cleanup(p.reset)
	return p
}

// reset removes every container and image and unmounts what podman (or
// a mount program it started) left under p.dir.
func (p *podman) reset() {
	if _, err := p.run("", "rm", "--all", "--force", "--time", "0"); err != nil {
		p.t.Logf("%s: podman rm: %v", p.name, err)
	}
	if _, err := p.run("", "system", "reset", "--force"); err != nil {
		p.t.Logf("%s: podman system reset: %v", p.name, err)
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		p.t.Logf("read mountinfo: %v", err)
		return
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if m := mounts[i].MountPoint; strings.HasPrefix(m, p.dir+"/") {
			p.t.Logf("%s: podman left %s mounted; detaching it", p.name, m)
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
}

// run runs podman with args, stdin from input, and returns its combined
// output.
func (p *podman) run(input string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", podmanTimeout, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("%s: podman %s: %w\n%s", p.name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// must runs podman and fails the test if it fails.
func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run("", args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// importRoot imports the directory root as the image ref.
func (p *podman) importRoot(root, ref string) {
	p.t.Helper()
	tarball := filepath.Join(p.dir, "import.tar")
	out, err := exec.Command("tar", "--numeric-owner", "--xattrs", "-C", root, "-cf", tarball, ".").CombinedOutput()
	if err != nil {
		p.t.Fatalf("tar %s: %v\n%s", root, err, out)
	}
	p.must("import", tarball, ref)
	os.Remove(tarball)
}

// listing describes every file of image ref, as `podman export` of a
// container made from it shows them: path, type, mode, owner, size,
// content digest, link target. Times are left out: they differ between
// runs by nature.
func (p *podman) listing(ref string) []string {
	p.t.Helper()
	name := fmt.Sprintf("list-%d", time.Now().UnixNano())
	p.must("create", "--name", name, ref, "true")
	defer p.run("", "rm", "--force", name)
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", "export", name)
	cmd.Env = p.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	lines, readErr := tarListing(stdout)
	if err := cmd.Wait(); err != nil || readErr != nil {
		p.t.Fatalf("%s: podman export %s: %v %v\n%s", p.name, ref, err, readErr, stderr.String())
	}
	return lines
}

// tarListing lists a tar stream's entries, sorted.
func tarListing(r io.Reader) ([]string, error) {
	tr := tar.NewReader(r)
	var lines []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		name := "/" + strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "./")
		line := fmt.Sprintf("%s %c %o %d:%d", name, h.Typeflag, h.Mode&0o7777, h.Uid, h.Gid)
		switch h.Typeflag {
		case tar.TypeReg:
			d := sha256.New()
			if _, err := io.Copy(d, tr); err != nil {
				return nil, err
			}
			line += fmt.Sprintf(" size=%d sha=%x", h.Size, d.Sum(nil)[:8])
		case tar.TypeSymlink, tar.TypeLink:
			line += " -> " + h.Linkname
		case tar.TypeChar, tar.TypeBlock:
			line += fmt.Sprintf(" %d,%d", h.Devmajor, h.Devminor)
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return lines, nil
}

// diffListings returns the lines only in a and only in b.
func diffListings(a, b []string) (onlyA, onlyB []string) {
	inB := make(map[string]bool, len(b))
	for _, l := range b {
		inB[l] = true
	}
	inA := make(map[string]bool, len(a))
	for _, l := range a {
		inA[l] = true
		if !inB[l] {
			onlyA = append(onlyA, l)
		}
	}
	for _, l := range b {
		if !inA[l] {
			onlyB = append(onlyB, l)
		}
	}
	return onlyA, onlyB
}

// requirePodman skips unless the integration tests were asked for, and
// fails when they were but podman is missing.
func requirePodman(t *testing.T) {
	t.Helper()
	if os.Getenv("OVL_INTEGRATION") != "1" {
		t.Skip("skipping: integration test with real podman; run `make test-integration`")
	}
	testutil.RequireRoot(t)
	for _, prog := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s is not installed (make test-integration installs it): %v", prog, err)
		}
	}
}
