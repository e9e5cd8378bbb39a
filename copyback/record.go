package copyback

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ovl-dev/ovl/layer"
)

// A copy is not a mount: nothing in the kernel remembers that a target
// holds a copied stack, nor which layers and upper it came from. A
// caller that leaves a copy behind for a later process to undo (`ovl
// mount --backend copy`, undone by `ovl umount`) records it, and the
// later process finds it by its target.

// recordFile is the record of target under dir (ovl's state directory:
// the copy outlives a reboot, so does its record).
func recordFile(dir, target string) string {
	sum := sha256.Sum256([]byte(target))
	return filepath.Join(dir, "copy-mounts", hex.EncodeToString(sum[:12])+".json")
}

// Record writes what m copied, keyed by its target (an absolute,
// canonical path), into dir, for Recorded. A second record for the same
// target is refused: the copy backend refuses a target that is not empty
// anyway.
func Record(dir string, m *Mount) error {
	file := recordFile(dir, m.spec.Target)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("copy: record %s: %w", m.spec.Target, err)
	}
	b, err := json.Marshal(m.spec)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("copy: record %s: %w", m.spec.Target, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(file)
		return fmt.Errorf("copy: record %s: %w", m.spec.Target, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(file)
		return fmt.Errorf("copy: record %s: %w", m.spec.Target, err)
	}
	return nil
}

// Recorded returns the copy Record left for target in dir, ready to be
// undone with Unmount (which keeps its changes in its upper, as at the
// end of a `--foreground` mount) and then Forget; ok is false when there
// is none.
func Recorded(dir, target string) (m *Mount, ok bool, err error) {
	b, err := os.ReadFile(recordFile(dir, target))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("copy: the record of %s: %w", target, err)
	}
	var spec layer.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, false, fmt.Errorf("copy: the record of %s: %w", target, err)
	}
	if spec.Target != target {
		return nil, false, nil
	}
	return &Mount{spec: spec}, true, nil
}

// Forget removes the record of target from dir.
func Forget(dir, target string) error {
	err := os.Remove(recordFile(dir, target))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("copy: forget the record of %s: %w", target, err)
	}
	return nil
}
