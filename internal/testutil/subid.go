package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SubIDStart and SubIDCount are the subordinate ids RunAsNobodyWithSubIDs
// gives uid 65534 (nobody) in /etc/subuid and /etc/subgid.
const (
	SubIDStart = 200000
	SubIDCount = 65536
)

// RunAsNobodyWithSubIDs is RunAsNobody with uid 65534 given the
// subordinate ids SubIDStart to SubIDStart+SubIDCount-1 in /etc/subuid
// and /etc/subgid, as an administrator grants them, so that newuidmap
// maps them for it. The host's files are never written: the child runs
// in a mount namespace of its own (unshare), where copies of the files
// with the range added are bound over them. So tests running at the
// same time see the files as they are, and when the child ends, however
// it ends, the range is gone with its namespace: there is nothing to
// restore.
func RunAsNobodyWithSubIDs(t *testing.T, extraEnv ...string) {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath("newuidmap"); err != nil {
		t.Fatalf("newuidmap not found (Debian package uidmap; scripts/deps.sh installs it): %v", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		data = append(data, fmt.Sprintf("nobody:%d:%d\n", SubIDStart, SubIDCount)...)
		p := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s: %v (the bind mount needs the file to exist)", f, err)
		}
		files = append(files, p)
	}
	wrap := []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$1" /etc/subuid && mount --bind "$2" /etc/subgid && shift 2 && exec "$@"`, "sh", files[0], files[1]}
	runAsNobody(t, wrap, extraEnv)
}
