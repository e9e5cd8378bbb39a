package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

// ownershipYAML is a container whose build step gives a directory and a
// binary to other owners, a mode 0700 and set-id bits, as database
// images do; and one that maps its own uids and gids.
const ownershipYAML = `containers:
  pg:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh |
        mkdir -p /var/lib/pg
        echo data > /var/lib/pg/file
        chown -R 100:101 /var/lib/pg
        chmod 700 /var/lib/pg
        cp /bin/busybox /bin/suid
        chown 100:101 /bin/suid
        chmod 6755 /bin/suid
  own-ids:
    uids: [0, 1000-1999]
    gids: [0, 1000-1999]
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Sh "touch /x && chown 1000:1001 /x"
commands:
  ls: !Command
    container: pg
    run: ls -ln /var/lib/pg; ls -lnd /var/lib/pg /bin/suid
`

// ownershipLs is what ls -ln shows of pg's files, as the step set them.
const ownershipLs = "-rw-r--r-- 100 101 file\n-rwsr-sr-x 100 101 /bin/suid\ndrwx------ 100 101 /var/lib/pg"

// lsOwners keeps of `ls -ln` lines the mode, owner, group and name.
func lsOwners(out string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) >= 9 && f[0] != "total" {
			lines = append(lines, strings.Join([]string{f[0], f[2], f[3], f[len(f)-1]}, " "))
		}
	}
	return strings.Join(lines, "\n")
}

// TestOwnershipCLI: ownership, mode 0700 and set-id bits a build step
// sets are what `ls -ln` shows inside `ovl run` and `ovl exec`, on every
// backend, as root and as uid 65534 with subordinate ids; `ovl clean
// --everything` then removes the project's .vagga. It runs as root, then
// again as uid 65534 with a range in /etc/subuid and /etc/subgid.
func TestOwnershipCLI(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RequireRoot(t)
		bin := checkBuildOVL(t)
		t.Run("root", func(t *testing.T) { ownershipCLI(t, bin) })
		t.Run("nobody-subids", func(t *testing.T) { testutil.RunAsNobodyWithSubIDs(t, "OVL_TEST_BINARY="+bin) })
		return
	}
	t.Run("nobody-subids", func(t *testing.T) { ownershipCLI(t, os.Getenv("OVL_TEST_BINARY")) })
}

func ownershipCLI(t *testing.T, bin string) {
	for _, b := range []string{"native", "fuse", "copy"} {
		t.Run(b, func(t *testing.T) {
			dir := buildTestProject(t, ownershipYAML)
			if _, _, code := checkOVLIn(t, bin, dir, nil, "build", "--backend", b, "pg", "own-ids"); code != 0 {
				t.Fatalf("ovl build exited %d", code)
			}
			out, _, code := checkOVLIn(t, bin, dir, nil, "run", "--backend", b, "pg", "--", "sh", "-c", "ls -ln /var/lib/pg; ls -lnd /var/lib/pg /bin/suid")
			if got := lsOwners(out); code != 0 || got != ownershipLs {
				t.Errorf("ovl run pg: exit %d, ls -ln shows\n%s\nwant\n%s", code, got, ownershipLs)
			}
			out, _, code = checkOVLIn(t, bin, dir, nil, "exec", "--backend", b, "ls")
			if got := lsOwners(out); code != 0 || got != ownershipLs {
				t.Errorf("ovl exec ls: exit %d, ls -ln shows\n%s\nwant\n%s", code, got, ownershipLs)
			}
			out, _, code = checkOVLIn(t, bin, dir, nil, "run", "--backend", b, "own-ids", "--", "ls", "-ln", "/x")
			if got := lsOwners(out); code != 0 || got != "-rw-r--r-- 1000 1001 /x" {
				t.Errorf("ovl run own-ids (uids [0, 1000-1999]): exit %d, %q; want /x owned by 1000:1001", code, got)
			}
			if _, _, code := checkOVLIn(t, bin, dir, nil, "clean", "--everything"); code != 0 {
				t.Errorf("ovl clean --everything exited %d", code)
			}
			if _, err := os.Lstat(filepath.Join(dir, ".vagga")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf(".vagga after ovl clean --everything: %v", err)
			}
		})
	}
}

// TestOwnershipCLIWithoutSubIDs: as uid 65534 without subordinate ids,
// `ovl build` warns once that ownership changes will be lost, a step
// that chowns fails naming itself and the missing /etc/subuid entry, and
// a step that lets its chown fail shows the owners lost.
func TestOwnershipCLIWithoutSubIDs(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t, "OVL_TEST_BINARY="+checkBuildOVL(t))
		return
	}
	bin := os.Getenv("OVL_TEST_BINARY")
	for _, b := range []string{"native", "fuse", "copy"} {
		t.Run(b, func(t *testing.T) {
			dir := buildTestProject(t, ownershipYAML)
			_, errOut, code := checkOVLIn(t, bin, dir, nil, "build", "--backend", b, "pg")
			for _, want := range []string{
				`step 2/2 !Sh "mkdir -p /var/lib/pg`,
				"chown: /var/lib/pg/file: Invalid argument",
				"a chown to another owner fails",
				"no range for nobody in /etc/subuid and /etc/subgid",
			} {
				if code != 1 || !strings.Contains(errOut, want) {
					t.Errorf("ovl build pg: exit %d, want 1 and %q in\n%s", code, want, errOut)
				}
			}
			if n := strings.Count(errOut, "level=WARN"); n != 1 || !strings.Contains(errOut, "ownership changes in them will be lost") {
				t.Errorf("want one warning that ownership changes will be lost, got %d", n)
			}
			lenient := strings.Replace(ownershipYAML, "chown -R 100:101 /var/lib/pg", "chown -R 100:101 /var/lib/pg || true", 1)
			lenient = strings.Replace(lenient, "chown 100:101 /bin/suid", "chown 100:101 /bin/suid || true", 1)
			if err := os.WriteFile(filepath.Join(dir, "vagga.yaml"), []byte(lenient), 0o644); err != nil {
				t.Fatal(err)
			}
			out, _, code := checkOVLIn(t, bin, dir, nil, "exec", "--backend", b, "ls")
			want := "-rw-r--r-- 0 0 file\n-rwsr-sr-x 0 0 /bin/suid\ndrwx------ 0 0 /var/lib/pg"
			if got := lsOwners(out); code != 0 || got != want {
				t.Errorf("ovl exec ls without subordinate ids: exit %d\n%s\nwant\n%s", code, got, want)
			}
		})
	}
}
