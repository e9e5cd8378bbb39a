package builder

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/vagga"
)

// listTree lists the paths below dir, slash-separated, sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			r, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(r))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestCopyAsVaggaDocuments builds !Copy steps with each of the options
// of build_steps.rst and checks the container against the text: the
// default ignore rules, umask 0o002, mtime 1 unless preserve-times,
// owners kept unless owner-uid/owner-gid, include-regex, ignore-regex,
// rules, no-default-rules, preserve-permissions, and a source inside
// the container.
func TestCopyAsVaggaDocuments(t *testing.T) {
	testAsRootAndNobody(t, func(t *testing.T) {
		dir := project(t, `
containers:
  c:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Copy {source: /work/src, path: /default}
    - !Copy {source: /work/src, path: /perms, preserve-permissions: true, preserve-times: true, umask: 0o077}
    - !Copy {source: /work/src, path: /umask, umask: 0o027}
    - !Copy {source: /work/src, path: /include, include-regex: "(^|/)[a-z]+\\.sql$"}
    - !Copy {source: /work/src, path: /ignore, ignore-regex: "\\.sql$"}
    - !Copy {source: /work/src, path: /rules, rules: ["/sub/", "!*.sql"]}
    - !Copy {source: /work/src, path: /bare, rules: ["/"], no-default-rules: true}
    - !Sh "mkdir -p /build/out && echo built > /build/out/bin && echo x > /build/out/x.bak"
    - !Copy {source: /build/out, path: /opt/out}
    - !Copy {source: /work/src/run.sh, path: /usr/bin/run, owner-uid: 0, owner-gid: 0}
`, map[string]string{
			"src/a.txt": "A", "src/sub/b.sql": "B", "src/sub/deep/c.sql": "C", "src/notes~": "~",
			"src/.git/config": "git", "src/x.orig": "o", "src/#tmp#": "#", "src/.vagga/x": "v",
			"src/keep.bak": "bak", "src/run.sh": "#!/bin/sh\n",
		})
		testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
		if err := os.Chmod(filepath.Join(dir, "src/run.sh"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "src/a.txt"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(dir, "src/a.txt"), time0, time0); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		r, _, err := buildOnce(t, dir, "c", runOpts(decision(t, backend.Native), dir, &out))
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out.String())
		}
		root := r.Root
		for path, want := range map[string][]string{
			// Left out by default: .git, .vagga, *~, *.bak, *.orig, #*#.
			"default": {"a.txt", "run.sh", "sub", "sub/b.sql", "sub/deep", "sub/deep/c.sql"},
			"include": {"sub", "sub/b.sql", "sub/deep", "sub/deep/c.sql"},
			"ignore":  {"#tmp#", ".git", ".git/config", ".vagga", ".vagga/x", "a.txt", "keep.bak", "notes~", "run.sh", "sub", "sub/deep", "x.orig"},
			"rules":   {"sub"},
			"bare":    {"#tmp#", ".git", ".git/config", ".vagga", ".vagga/x", "a.txt", "keep.bak", "notes~", "run.sh", "sub", "sub/b.sql", "sub/deep", "sub/deep/c.sql", "x.orig"},
			"opt/out": {"bin"}, // the default rules apply to a source in the container too
		} {
			if got := listTree(t, filepath.Join(root, path)); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("/%s has %q, want %q", path, got, want)
			}
		}
		modes := map[string]uint32{
			"default": 0o775, "default/a.txt": 0o664, "default/run.sh": 0o775, "default/sub": 0o775,
			"umask/a.txt": 0o640, "umask/run.sh": 0o750, "umask/sub": 0o750,
			"perms/a.txt": 0o640, "perms/run.sh": 0o700,
			"usr/bin/run": 0o775,
		}
		for p, want := range modes {
			if st := statT(t, filepath.Join(root, p)); st.Mode&0o7777 != want {
				t.Errorf("/%s mode %o, want %o", p, st.Mode&0o7777, want)
			}
		}
		// mtime 1 unless preserve-times; directories too.
		for _, p := range []string{"default/a.txt", "default/sub", "default", "opt/out/bin", "usr/bin/run"} {
			if st := statT(t, filepath.Join(root, p)); st.Mtim.Sec != 1 {
				t.Errorf("/%s mtime %d, want 1", p, st.Mtim.Sec)
			}
		}
		if st := statT(t, filepath.Join(root, "perms/a.txt")); st.Mtim.Sec != time0.Unix() {
			t.Errorf("preserve-times: mtime %d, want %d", st.Mtim.Sec, time0.Unix())
		}
		// Owners are kept: the project's files are the builder's, so
		// root's own ids; for an ordinary user, the container's root.
		if os.Geteuid() == 0 {
			var want unix.Stat_t
			if err := unix.Lstat(filepath.Join(dir, "src/a.txt"), &want); err != nil {
				t.Fatal(err)
			}
			if st := statT(t, filepath.Join(root, "default/a.txt")); st.Uid != want.Uid || st.Gid != want.Gid {
				t.Errorf("owner %d:%d, want the source's %d:%d", st.Uid, st.Gid, want.Uid, want.Gid)
			}
		}
		// A source that does not exist in the container names the step.
		writeProject(t, dir, "containers:\n  c:\n    setup:\n    - !Tar {url: ./base.tar.gz}\n    - !Copy {source: /nope, path: /x}\n", nil)
		_, _, err = buildOnce(t, dir, "c", Options{})
		var se *StepError
		if !errors.As(err, &se) || se.Index != 2 || !strings.Contains(err.Error(), "/nope does not exist in the container") {
			t.Errorf("missing container source: %v", err)
		}
	})
}

// TestCopyFilterInKey: what a !Copy or !Depends leaves out changes no
// key; what it takes does.
func TestCopyFilterInKey(t *testing.T) {
	dir := project(t, `
containers:
  c:
    setup:
    - !Depends {path: reqs, include-regex: "\\.txt$"}
    - !Copy {source: /work/src, path: /src}
`, map[string]string{"reqs/a.txt": "1", "reqs/notes.md": "x", "src/a": "a", "src/.git/HEAD": "h"})
	key := func() string {
		r, _, err := buildOnce(t, dir, "c", Options{NoRoot: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Key
	}
	k1 := key()
	writeProject(t, dir, "containers:\n  c:\n    setup:\n    - !Depends {path: reqs, include-regex: \"\\\\.txt$\"}\n    - !Copy {source: /work/src, path: /src}\n",
		map[string]string{"reqs/notes.md": "changed", "src/.git/HEAD": "changed", "src/x~": "new"})
	if k2 := key(); k2 != k1 {
		t.Error("a change to what the filters leave out changed the key")
	}
	writeProject(t, dir, "containers:\n  c:\n    setup:\n    - !Depends {path: reqs, include-regex: \"\\\\.txt$\"}\n    - !Copy {source: /work/src, path: /src}\n",
		map[string]string{"reqs/a.txt": "2"})
	if k3 := key(); k3 == k1 {
		t.Error("a change to a file !Depends takes kept the key")
	}
}

// TestUnsupportedStepOnlyBlocksItsContainer: a container with a step ovl
// cannot run does not keep the others from building, and fails with
// the line.
func TestUnsupportedStepOnlyBlocksItsContainer(t *testing.T) {
	dir := project(t, "containers:\n  ubuntu:\n    setup:\n    - !Ubuntu jammy\n  c:\n    setup:\n    - !Text {/etc/x: y}\n", nil)
	r, _ := mustBuild(t, dir, "c", Options{})
	mustContain(t, r.Root, "etc/x", "y")
	_, _, err := buildOnce(t, dir, "ubuntu", Options{})
	if !errors.Is(err, vagga.ErrUnsupported) || !strings.Contains(err.Error(), filepath.Join(dir, "vagga.yaml")+":4: step !Ubuntu") {
		t.Errorf("ubuntu: %v", err)
	}
}
