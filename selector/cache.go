package selector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/userns"
)

// cacheVersion changes when Report's meaning changes, so that old cache
// files are ignored.
const cacheVersion = 3 // 3: the fuse_other_uids probe

// cacheKey is what a probe's answer depends on. Two calls with equal keys
// get the same answer, so the second is served from the cache.
type cacheKey struct {
	Version         int    `json:"version"`
	KernelRelease   string `json:"kernel_release"`
	KernelVersion   string `json:"kernel_version"`
	EUID            int    `json:"euid"`
	InUserNamespace bool   `json:"in_user_namespace"`
	LayerFS         string `json:"layer_fs"`  // statfs type of the layer dir
	LayerDev        uint64 `json:"layer_dev"` // and its device
	LayerDir        string `json:"layer_dir"`
	// Binary identifies the ovl build (size and mtime of the
	// executable): a new build may probe differently, e.g. once its FUSE
	// backend exists.
	Binary string `json:"binary"`
	// Caps are the capabilities that change the answer (version 2): one
	// container's root is not another's.
	Caps string `json:"caps"`
}

// cacheEntry is one cache file: the key it answers, and the report.
type cacheEntry struct {
	Key    cacheKey `json:"key"`
	Report *Report  `json:"report"`
}

func currentKey(layerDir string) (cacheKey, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return cacheKey{}, fmt.Errorf("uname: %w", err)
	}
	fsType, dev, err := layerFS(layerDir)
	if err != nil {
		return cacheKey{}, err
	}
	k := cacheKey{
		Version:         cacheVersion,
		KernelRelease:   unix.ByteSliceToString(u.Release[:]),
		KernelVersion:   unix.ByteSliceToString(u.Version[:]),
		EUID:            os.Geteuid(),
		InUserNamespace: userns.InUserNamespace(),
		LayerFS:         fsType,
		LayerDev:        dev,
		LayerDir:        layerDir,
	}
	k.Caps = fmt.Sprintf("sys_admin=%t,sys_chroot=%t", userns.CanMount(), userns.HasCap(unix.CAP_SYS_CHROOT))
	if fi, err := os.Stat("/proc/self/exe"); err == nil {
		k.Binary = fmt.Sprintf("%d@%d", fi.Size(), fi.ModTime().UnixNano())
	}
	return k, nil
}

// file is the cache file name for k under dir.
func (k cacheKey) file(dir string) string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return filepath.Join(dir, "probe-"+hex.EncodeToString(sum[:8])+".json")
}

// cachedProbe returns the cached report for layerDir's key from cacheDir,
// or runs probe and caches its report. refresh skips the lookup. A cache
// that cannot be read or written costs a fresh probe, never an error.
func cachedProbe(ctx context.Context, cacheDir, layerDir string, refresh bool, probe ProbeFunc) (*Report, error) {
	key, err := currentKey(layerDir)
	if err != nil {
		return nil, err
	}
	file := key.file(cacheDir)
	if !refresh {
		if r, ok := readCache(file, key); ok {
			r.Cached, r.CacheFile = true, file
			return r, nil
		}
	}
	r, err := probe(ctx, layerDir)
	if err != nil {
		return nil, err
	}
	r.Cached = false
	if err := writeCache(file, cacheEntry{Key: key, Report: r}); err != nil {
		slog.Warn("probe cache not written", "file", file, "err", err)
	} else {
		r.CacheFile = file
		pruneCache(cacheDir, file)
	}
	return r, nil
}

// cacheMaxAge is how long a cache file not rewritten stays: reports of
// older ovl builds and kernels would otherwise pile up until reboot. One
// still in use costs a fresh probe when it goes.
const cacheMaxAge = 24 * time.Hour

// pruneCache removes cache files other than keep written more than
// cacheMaxAge ago.
func pruneCache(dir, keep string) {
	files, _ := filepath.Glob(filepath.Join(dir, "probe-*.json"))
	for _, f := range files {
		if f == keep {
			continue
		}
		if fi, err := os.Stat(f); err == nil && time.Since(fi.ModTime()) > cacheMaxAge {
			os.Remove(f)
		}
	}
}

func readCache(file string, key cacheKey) (*Report, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			slog.Debug("probe cache unreadable", "file", file, "err", err)
		}
		return nil, false
	}
	var e cacheEntry
	if err := json.Unmarshal(b, &e); err != nil || e.Key != key || e.Report == nil {
		slog.Debug("probe cache stale or damaged", "file", file, "err", err)
		return nil, false
	}
	return e.Report, true
}

// writeCache writes e to file atomically, so that a concurrent reader sees
// the old entry or the new one.
func writeCache(file string, e cacheEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".probe-*.tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
