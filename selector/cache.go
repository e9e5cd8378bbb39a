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
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/userns"
)

// cacheVersion changes when Report's meaning changes, so that old cache
// files are ignored. 2: the capabilities in the key; 3: the environment
// recorded, fuse_in_place probed; 4: the fuse_other_uids probe.
const cacheVersion = 4

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

// cacheEntry is one cache file: the key it answers, the environment it
// was probed in, and the report.
type cacheEntry struct {
	Key    cacheKey    `json:"key"`
	Env    environment `json:"env"`
	Report *Report     `json:"report"`
}

// environment is what may change under a cached report without a
// reboot, a new kernel or a new ovl, and changes what works: whether
// user namespaces may be made, /dev/fuse and fusermount3, and the
// process's seccomp filters and no_new_privs (a container's, a
// sandbox's). It costs a few small reads. A report probed in another
// environment is probed again, saying what changed (cachedProbe).
type environment struct {
	MaxUserNamespaces   string `json:"user.max_user_namespaces"`
	UnprivUsernsClone   string `json:"kernel.unprivileged_userns_clone,omitempty"`
	AppArmorUsernsLimit string `json:"kernel.apparmor_restrict_unprivileged_userns,omitempty"`
	DevFuse             string `json:"/dev/fuse"`
	Fusermount3         string `json:"fusermount3"`
	Seccomp             string `json:"seccomp"`
}

// currentEnv reads the environment this process probes in.
func currentEnv() environment {
	sysctl := func(name string) string {
		b, err := os.ReadFile("/proc/sys/" + name)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	node := func(p string) string {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return "absent"
		}
		return fmt.Sprintf("mode %o, owner %d, device %d:%d", st.Mode, st.Uid, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	e := environment{
		MaxUserNamespaces:   sysctl("user/max_user_namespaces"),
		UnprivUsernsClone:   sysctl("kernel/unprivileged_userns_clone"),
		AppArmorUsernsLimit: sysctl("kernel/apparmor_restrict_unprivileged_userns"),
		DevFuse:             node("/dev/fuse"),
		Fusermount3:         "absent",
	}
	if p, err := exec.LookPath("fusermount3"); err == nil {
		e.Fusermount3 = p + ": " + node(p)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		var fields []string
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "Seccomp" || k == "Seccomp_filters" || k == "NoNewPrivs") {
				fields = append(fields, k+" "+strings.TrimSpace(v))
			}
		}
		e.Seccomp = strings.Join(fields, ", ")
	}
	return e
}

// changes says how e differs from was, one "what: was -> now" each.
func (e environment) changes(was environment) []string {
	var out []string
	a, b := reflect.ValueOf(was), reflect.ValueOf(e)
	for i := 0; i < a.NumField(); i++ {
		if x, y := a.Field(i).String(), b.Field(i).String(); x != y {
			name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("json"), ",")
			out = append(out, fmt.Sprintf("%s: %q -> %q", name, x, y))
		}
	}
	return out
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
// or runs probe and caches its report. refresh skips the lookup. A
// report probed in another environment (see environment) is probed
// again, and a warning says what changed. A cache that cannot be read or
// written costs a fresh probe, never an error.
func cachedProbe(ctx context.Context, cacheDir, layerDir string, refresh bool, probe ProbeFunc) (*Report, error) {
	key, err := currentKey(layerDir)
	if err != nil {
		return nil, err
	}
	env := currentEnv()
	file := key.file(cacheDir)
	if !refresh {
		if e, ok := readCache(file, key); ok {
			if changed := env.changes(e.Env); len(changed) > 0 {
				slog.Warn("the environment changed since ovl probed this kernel (ovl check --refresh probes again): probing again",
					"probed", e.Report.ProbedAt.Format(time.RFC3339), "changed", strings.Join(changed, "; "))
			} else {
				r := e.Report
				r.Cached, r.CacheFile = true, file
				servedFromCache.Store(true)
				return r, nil
			}
		}
	}
	r, err := probe(ctx, layerDir)
	if err != nil {
		return nil, err
	}
	r.Cached = false
	if err := writeCache(file, cacheEntry{Key: key, Env: env, Report: r}); err != nil {
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

func readCache(file string, key cacheKey) (cacheEntry, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			slog.Debug("probe cache unreadable", "file", file, "err", err)
		}
		return cacheEntry{}, false
	}
	var e cacheEntry
	if err := json.Unmarshal(b, &e); err != nil || e.Key != key || e.Report == nil {
		slog.Debug("probe cache stale or damaged", "file", file, "err", err)
		return cacheEntry{}, false
	}
	return e, true
}

// servedFromCache says this process got its report from the cache and
// has not probed again since (Recheck).
var servedFromCache atomic.Bool

// Recheck is for a caller whose backend, chosen by Select(o) as d, failed
// at its first step with cause: when d came from a cached report, the
// cache may have outlived what it describes in a way its key and
// environment do not show, so Recheck probes again, once per process,
// and rewrites the cache. It returns the decision made now, and changed
// when that differs from d; then a warning has said so, naming cause,
// and the caller may try again with it. A decision that was probed in
// this process is returned as it is.
func Recheck(ctx context.Context, o Options, d Decision, cause error) (now Decision, changed bool, err error) {
	if !servedFromCache.Swap(false) {
		return d, false, nil
	}
	o.Refresh = true
	now, err = Select(ctx, o)
	if err != nil || now.Backend == d.Backend {
		return d, false, err
	}
	slog.Warn(fmt.Sprintf("the %s backend, chosen from the probe cache, failed; probed again: %s", d.Backend, now.Backend),
		"failure", cause, "because", strings.Join(now.Reasons, "; "))
	return now, true, nil
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
