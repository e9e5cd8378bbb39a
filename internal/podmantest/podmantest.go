// Package podmantest sets up a podman of its own in a directory: the
// configuration with which Debian's podman runs on machines like the ones
// ovl is tested and measured on, for the podman workloads of bench/ and
// the podman tests of integration/.
//
// Rootful, on runc (crun refuses hybrid cgroups), with no network
// namespace (no /dev/net/tun), ulimits that need no CAP_SYS_RESOURCE,
// cgroupfs, and every path podman writes (storage, run root, temp files,
// volumes) under the directory. Keep the directory short: from about 45
// characters conmon's socket paths under the run root pass the 108 bytes
// a socket address holds, and podman then waits out a 20 s timeout at
// every container's exit.
package podmantest

import (
	"fmt"
	"os"
	"path/filepath"
)

// MaxDir is the longest directory whose conmon sockets fit (measured with
// podman 4.3: 44 characters work, 50 do not).
const MaxDir = 44

// WriteConfig writes containers.conf, storage.conf and registries.conf
// into dir, with overlay storage mounted by mountProgram ("" for the
// kernel's overlay driver), and returns the environment variables that
// point podman at them, to add to its environment.
func WriteConfig(dir, mountProgram string) ([]string, error) {
	if len(dir) > MaxDir {
		return nil, fmt.Errorf("podman directory %s is longer than %d characters, which makes conmon's socket paths too long: use a shorter directory", dir, MaxDir)
	}
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\nrunroot = %q\ngraphroot = %q\n",
		filepath.Join(dir, "run"), filepath.Join(dir, "root"))
	if mountProgram != "" {
		storage += fmt.Sprintf("[storage.options.overlay]\nmount_program = %q\n", mountProgram)
	}
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
tmp_dir = %q
static_dir = %q
volume_path = %q
`, filepath.Join(dir, "tmp"), filepath.Join(dir, "root", "libpod"), filepath.Join(dir, "volumes"))
	for name, text := range map[string]string{
		"storage.conf":    storage,
		"containers.conf": conf,
		"registries.conf": "unqualified-search-registries = []\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	return []string{
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		"TMPDIR=" + dir,
	}, nil
}
