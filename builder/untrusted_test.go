package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/runner"
	"github.com/ovl-dev/ovl/selector"
)

// Builds of projects their user did not write (a clone of someone else's
// repository) must not reach outside the project, whoever runs them: the
// tests below run as root and as uid 65534, on every backend.

// outsideSecret writes, outside any project, a directory with a file
// only the current user may read, and returns the directory and the
// file's content.
func outsideSecret(t *testing.T) (dir, secret string) {
	t.Helper()
	dir = filepath.Join(testutil.SharedDir(t), "outside")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	secret = fmt.Sprintf("TOP-SECRET-%d-%s", os.Getpid(), t.Name())
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, secret
}

// assertNotCopied fails t if any file under the project's .vagga holds
// secret.
func assertNotCopied(t *testing.T, projectDir, secret string) {
	t.Helper()
	filepath.WalkDir(filepath.Join(projectDir, ".vagga"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("the file outside the project was copied to %s", p)
		}
		return nil
	})
}

// buildOn builds container name of the project in dir, its command steps
// run on backend b with their output into out; it skips t when b is not
// available here and fails it on any other error.
func buildOn(t *testing.T, dir, name string, b selector.Decision, out *bytes.Buffer) (*Result, *recorder) {
	t.Helper()
	r, rec, err := buildOnce(t, dir, name, runOpts(b, dir, out))
	if errors.Is(err, backend.ErrUnavailable) {
		t.Skipf("backend %s unavailable here: %v", b.Backend, err)
	}
	if err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out.String())
	}
	return r, rec
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, b selector.Decision)) {
	for _, b := range backends(t) {
		t.Run(b.Backend, func(t *testing.T) { f(t, b) })
	}
}

// TestCopyStaysInProject: !Copy does not follow a symlink out of the
// project in the middle of its source path, whether the project brings
// the symlink along or a command of another container writes it into
// /work; symlinks that stay in the project are followed on the way to
// the source, and copied as symlinks below it.
func TestCopyStaysInProject(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		eachBackend(t, func(t *testing.T, b selector.Decision) {
			outside, secret := outsideSecret(t)
			yaml := fmt.Sprintf(`
containers:
  direct:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Copy {source: /work/leakdir/secret, path: /x}
  maker:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh "ln -sfn %s /work/v"
  victim:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Copy {source: /work/v/secret, path: /x}
  inner:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Copy {source: /work/inside/alias/f, path: /in/f}
    - !Copy {source: /work/inside/real, path: /tree}
`, outside)
			dir := project(t, yaml, map[string]string{"inside/real/f": "in"})
			testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
			for link, target := range map[string]string{"leakdir": outside, "inside/alias": "real", "inside/real/lnk": "f"} {
				if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			_, _, err := buildOnce(t, dir, "direct", runOpts(b, dir, &out))
			if !errors.Is(err, ErrOutsideProject) || !errors.Is(err, ErrPath) || !strings.Contains(err.Error(), "leakdir/secret") {
				t.Errorf("!Copy through leakdir -> %s: %v; want ErrOutsideProject naming leakdir/secret", outside, err)
			}

			buildOn(t, dir, "maker", b, &out)
			if l, err := os.Readlink(filepath.Join(dir, "v")); err != nil || l != outside {
				t.Fatalf("the command step made /work/v -> %q (%v), want %s", l, err, outside)
			}
			_, _, err = buildOnce(t, dir, "victim", runOpts(b, dir, &out))
			if !errors.Is(err, ErrOutsideProject) || !strings.Contains(err.Error(), "v/secret") {
				t.Errorf("!Copy through v -> %s written by another container: %v; want ErrOutsideProject", outside, err)
			}
			assertNotCopied(t, dir, secret)

			r, _ := mustBuild(t, dir, "inner", runOpts(b, dir, &out))
			mustContain(t, r.Root, "in/f", "in")
			mustContain(t, r.Root, "tree/f", "in")
			if l, err := os.Readlink(filepath.Join(r.Root, "tree/lnk")); err != nil || l != "f" {
				t.Errorf("symlink inside the source: %q, %v; want a symlink to f", l, err)
			}
		})
	})
}

// tarEntry is one entry of writeTar's archive.
type tarEntry struct {
	name     string
	kind     byte // tar.TypeReg, TypeDir, TypeSymlink, TypeLink
	body     string
	linkname string
	uid, gid int
}

// writeTar writes an uncompressed tarball of entries to p.
func writeTar(t *testing.T, p string, entries []tarEntry) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.kind, Mode: 0o644, Linkname: e.linkname, ModTime: time0, Uid: e.uid, Gid: e.gid}
		if e.kind == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.kind == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTarLinksStayInTheRoot: a tarball whose entry esc is a symlink to a
// host directory and whose entry hl is a hard link to esc/secret does
// not link the host file into the layer; a hard link to an earlier
// entry of the archive still works.
func TestTarLinksStayInTheRoot(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		eachBackend(t, func(t *testing.T, b selector.Decision) {
			outside, secret := outsideSecret(t)
			dir := project(t, `
containers:
  evil:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Tar {url: ./evil.tar, path: /opt}
  good:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Tar {url: ./good.tar, path: /opt}
    - !Sh "cat /opt/hl > /opt/read-through-link"
`, nil)
			testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
			writeTar(t, filepath.Join(dir, "evil.tar"), []tarEntry{
				{name: "esc", kind: tar.TypeSymlink, linkname: outside},
				{name: "hl", kind: tar.TypeLink, linkname: "esc/secret"},
			})
			writeTar(t, filepath.Join(dir, "good.tar"), []tarEntry{
				{name: "d/", kind: tar.TypeDir},
				{name: "d/f", kind: tar.TypeReg, body: "inner"},
				{name: "esc", kind: tar.TypeSymlink, linkname: outside},
				{name: "hl", kind: tar.TypeLink, linkname: "d/f"},
			})
			var out bytes.Buffer
			_, _, err := buildOnce(t, dir, "evil", runOpts(b, dir, &out))
			if err == nil || !strings.Contains(err.Error(), "hl: hard link to esc/secret") || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("hard link through the archive's symlink: %v; want an error naming hl and the symlink", err)
			}
			if st := statT(t, filepath.Join(outside, "secret")); st.Nlink != 1 {
				t.Errorf("the host file has %d links after the build, want 1: it was linked into the layer", st.Nlink)
			}
			assertNotCopied(t, dir, secret)
			assertNothingHalfMade(t, dir)

			r, _ := buildOn(t, dir, "good", b, &out)
			mustContain(t, r.Root, "opt/read-through-link", "inner")
			if a, b := statT(t, filepath.Join(r.Root, "opt/hl")), statT(t, filepath.Join(r.Root, "opt/d/f")); a.Ino != b.Ino {
				t.Errorf("opt/hl and opt/d/f are not one file in the root")
			}
		})
	})
}

// execCommand runs command name of the project in dir as `ovl exec`
// does (CommandRun, then the runner on b) and returns its output.
func execCommand(t *testing.T, dir, name string, b selector.Decision) string {
	t.Helper()
	var out bytes.Buffer
	eng := New(load(t, dir), runOpts(b, dir, &out))
	rc, err := eng.CommandRun(context.Background(), name, nil, dir)
	if err != nil {
		t.Fatalf("exec %s: %v\n%s", name, err, out.String())
	}
	rc.Decision, rc.Stdout, rc.Stderr = b, &out, &out
	res, err := runner.Run(context.Background(), rc)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec %s: exit %d, %v\n%s", name, res.ExitCode, err, out.String())
	}
	return out.String()
}

// TestStoreIsPrivate: the directories of layers and roots are the
// builder's alone (a root built by root holds set-id root binaries), and
// containers still run from them, read-only and writable.
func TestStoreIsPrivate(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		eachBackend(t, func(t *testing.T, b selector.Decision) {
			dir := project(t, `
containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh "cp /bin/busybox /bin/suid && chmod 4755 /bin/suid"
    - !Text {/etc/motd: hello}
commands:
  show: !Command
    container: c
    run: "ls -ln /bin/suid; cat /etc/motd"
  write: !Command
    container: c
    write-mode: transient-hard-link-copy
    run: "echo changed > /etc/motd; cat /etc/motd"
`, nil)
			testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
			var out bytes.Buffer
			buildOn(t, dir, "c", b, &out)
			var private []string
			for _, pattern := range []string{".vagga/.layers", ".vagga/.roots", ".vagga/.layers/*", ".vagga/.roots/*"} {
				m, _ := filepath.Glob(filepath.Join(dir, pattern))
				if len(m) == 0 {
					t.Fatalf("nothing at %s", pattern)
				}
				private = append(private, m...)
			}
			for _, p := range private {
				if fi, err := os.Lstat(p); err != nil || (fi.IsDir() && fi.Mode().Perm()&0o077 != 0) {
					t.Errorf("%s: mode %v (%v); want no access for group and others", p, fi.Mode(), err)
				}
			}
			if got := execCommand(t, dir, "show", b); !strings.HasPrefix(got, "-rwsr-xr-x") || !strings.HasSuffix(got, "hello") {
				t.Errorf("read-only run shows %q; want the set-uid binary and /etc/motd", got)
			}
			if got := execCommand(t, dir, "write", b); got != "changed\n" {
				t.Errorf("writable run shows %q", got)
			}
			if got := execCommand(t, dir, "show", b); !strings.HasSuffix(got, "hello") {
				t.Errorf("after a writable run the root shows %q", got)
			}
		})
	})
}

// TestCopyWholeProject: `!Copy source: /work` copies the project without
// its .vagga (vagga's default rule), so it does not copy the layer it
// writes into itself without end; what it leaves out is not in the
// step's key either, so the next build is cached.
func TestCopyWholeProject(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		eachBackend(t, func(t *testing.T, b selector.Decision) {
			dir := project(t, `
containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Copy {source: /work, path: /proj}
    - !Sh "find /proj | sort > /listing"
`, map[string]string{"a": "A", "sub/b": "B", "sub/.vagga/x": "nested"})
			testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
			var out bytes.Buffer
			r, _ := buildOn(t, dir, "c", b, &out)
			want := "/proj\n/proj/a\n/proj/base.tar.gz\n/proj/sub\n/proj/sub/b\n/proj/vagga.yaml\n"
			mustContain(t, r.Root, "listing", want)
			r2, rec := mustBuild(t, dir, "c", runOpts(b, dir, &out))
			if r2.Ran != 0 {
				t.Errorf("the rebuild ran %d steps (%v): .vagga changed the !Copy key", r2.Ran, rec.statuses())
			}
		})
	})
}
