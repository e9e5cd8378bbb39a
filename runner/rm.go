package runner

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/layer"
)

// rmEntry removes a directory tree as root of a user namespace with the
// caller's subordinate ids mapped: what an ordinary user needs to remove
// files that a run created as another uid (a copy backend's transient
// copy left by a killed run).
const rmEntry = "ovl-runner-rm"

func init() { reexec.Register(rmEntry, rmMain) }

// removeAsMappedRoot removes p in a user namespace where the caller is
// root and all its subordinate ids are mapped (idmap.Full). Without
// subordinate ids it fails with idmap.ErrNoSubordinate: the files cannot
// belong to the caller's ids then, and removing as mapped root cannot
// help.
func removeAsMappedRoot(p string) error {
	m, err := idmap.Full()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd := reexec.Command(rmEntry, p)
	cmd.Stderr = &stderr
	if err := idmap.Start(cmd, m); err != nil {
		return fmt.Errorf("remove %s in a user namespace: %w", p, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("remove %s in a user namespace: %w: %s", p, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// rmMain becomes root with capabilities in its namespace once its ids
// are mapped, and removes os.Args[1].
func rmMain() {
	idmap.Mapped(rmEntry)
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: rm DIR")
		os.Exit(2)
	}
	if err := layer.RemoveAll(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
