package kernelsim

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// envHelper makes the test binary, run under a simulation, try each call
// a simulated kernel changes and print what each returned.
const envHelper = "KERNELSIM_TEST_HELPER"

// calls are what the helper tries, by name, each returning its errno
// (0 for success).
var calls = map[string]func(dir string) error{
	"fsopen": func(string) error {
		fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
		if err == nil {
			unix.Close(fd)
		}
		return err
	},
	"fsconfig-create": func(string) error {
		fd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.FsconfigCreate(fd)
	},
	"fsconfig-string": func(string) error {
		fd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.FsconfigSetString(fd, "mode", "0755")
	},
	"userns": func(string) error {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		return cmd.Run()
	},
	"mountns": func(string) error {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
		return cmd.Run()
	},
	"mknod-whiteout": func(dir string) error {
		return unix.Mknodat(unix.AT_FDCWD, filepath.Join(dir, "wh"), unix.S_IFCHR, 0)
	},
	"mknod-fifo": func(dir string) error {
		return unix.Mknodat(unix.AT_FDCWD, filepath.Join(dir, "fifo"), unix.S_IFIFO|0o600, 0)
	},
	"rename-whiteout": func(dir string) error {
		if err := os.WriteFile(filepath.Join(dir, "a"), nil, 0o600); err != nil {
			return err
		}
		return unix.Renameat2(unix.AT_FDCWD, filepath.Join(dir, "a"), unix.AT_FDCWD, filepath.Join(dir, "b"), unix.RENAME_WHITEOUT)
	},
	"dev-fuse": func(string) error {
		f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		return err
	},
	"dev-null": func(string) error {
		f, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		return err
	},
}

// TestHelperCalls is the helper: it runs only under a simulation.
func TestHelperCalls(t *testing.T) {
	dir := os.Getenv(envHelper)
	if dir == "" {
		t.Skip("the helper of TestKernels")
	}
	out := map[string]string{}
	for name, call := range calls {
		out[name] = "ok"
		if err := call(dir); err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				out[name] = unix.ErrnoName(errno)
			} else {
				out[name] = err.Error()
			}
		}
	}
	k, _ := Active()
	out["active"] = k.Name
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		t.Fatal(err)
	}
}

// TestKernels runs the helper under each simulated kernel, as root and as
// uid 65534 (the filter survives setpriv's change of ids), and checks
// that exactly the calls the kernel changes fail, as they fail there.
func TestKernels(t *testing.T) {
	testutil.RequireRoot(t)
	base := map[string]string{
		"fsopen": "ok", "fsconfig-create": "ok", "fsconfig-string": "ok", "userns": "ok", "mountns": "ok",
		"mknod-whiteout": "ok", "mknod-fifo": "ok", "rename-whiteout": "ok", "dev-fuse": "ok", "dev-null": "ok",
	}
	changed := map[string]map[string]string{
		NoMountAPI.Name:    {"fsopen": "ENOSYS", "fsconfig-create": "ENOSYS", "fsconfig-string": "ENOSYS"},
		LegacyParser.Name:  {"fsconfig-create": "EINVAL"},
		FsopenBlocked.Name: {"fsopen": "EPERM", "fsconfig-create": "EPERM", "fsconfig-string": "EPERM"},
		NoUserns.Name:      {"userns": "EPERM"},
		NoMknod.Name:       {"mknod-whiteout": "EPERM", "rename-whiteout": "EPERM"},
		NoDevFuse.Name:     {"dev-fuse": "ENOENT"},
	}
	for _, k := range All() {
		for _, nobody := range []bool{false, true} {
			name := k.Name + "/root"
			if nobody {
				name = k.Name + "/nobody"
			}
			t.Run(name, func(t *testing.T) {
				dir := testutil.SharedDir(t)
				argv := []string{os.Args[0], "-test.run=^TestHelperCalls$", "-test.count=1"}
				if nobody {
					argv = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, argv...)
				}
				cmd := Command(k, argv[0], argv[1:]...)
				cmd.Env = append(os.Environ(), envHelper+"="+dir)
				var stderr []byte
				out, err := cmd.Output()
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				if err != nil {
					t.Fatalf("helper under %s: %v\n%s%s", k.Name, err, out, stderr)
				}
				var got map[string]string
				if err := json.Unmarshal(firstJSONLine(out), &got); err != nil {
					t.Fatalf("helper output %q: %v", out, err)
				}
				if got["active"] != k.Name {
					t.Errorf("Active() in the command = %q, want %q", got["active"], k.Name)
				}
				for call, want := range base {
					if w, ok := changed[k.Name][call]; ok {
						want = w
					}
					switch {
					case !nobody:
					case call == "mountns", strings.HasPrefix(call, "fs") && want != "ENOSYS":
						// Without CAP_SYS_ADMIN the kernel refuses these
						// itself (after the filter, which runs first).
						want = "EPERM"
					}
					if got[call] != want {
						t.Errorf("%s under %s: %s, want %s", call, k.Name, got[call], want)
					}
				}
			})
		}
	}
}

// firstJSONLine returns the first line of out that starts with '{': the
// helper's report, among the test binary's own output.
func firstJSONLine(out []byte) []byte {
	for len(out) > 0 {
		line := out
		if i := indexByte(out, '\n'); i >= 0 {
			line, out = out[:i], out[i+1:]
		} else {
			out = nil
		}
		if len(line) > 0 && line[0] == '{' {
			return line
		}
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
