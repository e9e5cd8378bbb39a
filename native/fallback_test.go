package native

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// TestMountFallsBack makes this kernel look older or locked down, one
// refusal at a time, and checks Mount takes the next way and still
// shows the stack: whatever the new mount API refuses is retried with
// mount(2), and a stack whose paths pass mount(2)'s page is mounted with
// its layers named by descriptor. (internal/kernelsim makes the kernel
// itself refuse, for whole programs: see selector's and cmd/ovl's tests.)
func TestMountFallsBack(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		layers int // awkward extra layers (paths of 100+ bytes) under the three of threeLayers
		// What the simulated kernel refuses.
		fsopen   error // fsopen's error: ENOSYS before Linux 5.2, EPERM where a policy blocks it
		plusFrom int   // the first lowerdir+ (counting from 1) refused with EINVAL; 0: none
		create   error // FSCONFIG_CMD_CREATE's error: EINVAL with the legacy parser of 5.2-6.4
		// wantMode: "lowerdir+", "lowerdir" (one string, through mount(2)
		// unless wantString), "by fd" (mount(2), layers by descriptor).
		wantMode   string
		wantString bool // the one string went through fsconfig
	}{
		{name: "new API", wantMode: "lowerdir+"},
		{name: "no lowerdir+ (6.5-6.7)", plusFrom: 1, wantMode: "lowerdir", wantString: true},
		{name: "no lowerdir+, long stack", plusFrom: 1, layers: 8, wantMode: "lowerdir"},
		{name: "no lowerdir+, over one page", plusFrom: 1, layers: 60, wantMode: "by fd"},
		{name: "legacy parser refuses at create (5.2-6.4)", create: unix.EINVAL, wantMode: "lowerdir"},
		{name: "legacy parser, past a page at the 40th lowerdir+", plusFrom: 40, layers: 60, wantMode: "by fd"},
		{name: "legacy parser, 300 long layers", create: unix.EINVAL, layers: 300, wantMode: "by fd"},
		{name: "no fsopen (before 5.2)", fsopen: unix.ENOSYS, wantMode: "lowerdir"},
		{name: "no fsopen, over one page", fsopen: unix.ENOSYS, layers: 60, wantMode: "by fd"},
		{name: "fsopen blocked (EPERM)", fsopen: unix.EPERM, wantMode: "lowerdir"},
		{name: "fsopen blocked, 300 long layers", fsopen: unix.EPERM, layers: 300, wantMode: "by fd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), `a:b,c\d`)
			spec := threeLayers(t, root)
			spec.Lowers = append(spec.Lowers, awkwardLayers(t, root, tc.layers)...)
			m := kernelMounter
			if tc.fsopen != nil {
				m.fsopen = func(string, int) (int, error) { return -1, tc.fsopen }
			}
			plus, viaString := 0, false
			m.setString = func(fd int, key, value string) error {
				viaString = viaString || key == "lowerdir"
				if key == "lowerdir+" {
					if plus++; tc.plusFrom > 0 && plus >= tc.plusFrom {
						return unix.EINVAL
					}
				}
				return unix.FsconfigSetString(fd, key, value)
			}
			if tc.create != nil {
				m.create = func(int) error { return tc.create }
			}
			b := &Backend{m: &m}

			testutil.CleanupMount(t, spec.Target)
			mnt, err := b.Mount(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			defer mnt.Unmount()
			opts := superOptions(t, spec.Target)
			if got := mountMode(opts); got != tc.wantMode {
				t.Errorf("mounted with %s, want %s (options %.200q)", got, tc.wantMode, opts)
			}
			if viaString != tc.wantString {
				t.Errorf("one lowerdir string through fsconfig: %v, want %v", viaString, tc.wantString)
			}
			if got := readFile(t, filepath.Join(spec.Target, "a.txt")); got != "top" {
				t.Errorf("a.txt = %q, want %q", got, "top")
			}
			if tc.layers > 0 {
				last := "f" + strconv.Itoa(tc.layers-1)
				if got, want := readFile(t, filepath.Join(spec.Target, last)), strconv.Itoa(tc.layers-1); got != want {
					t.Errorf("%s = %q, want %q from the bottom layer", last, got, want)
				}
			}
			writeTree(t, spec.Target, map[string]string{"w": "w"})
			if got := readFile(t, filepath.Join(spec.Upper, "w")); got != "w" {
				t.Errorf("upper/w = %q, want the write through the mount", got)
			}
		})
	}
}

// mountMode tells from a mount's super options how it was made:
// "lowerdir+", "by fd" (descriptor numbers as paths), or "lowerdir".
func mountMode(opts string) string {
	switch {
	case strings.Contains(opts, "lowerdir+="):
		return "lowerdir+"
	case regexp.MustCompile(`(^|,)lowerdir=\d+:\d+`).MatchString(opts):
		return "by fd"
	case strings.Contains(opts, "lowerdir="):
		return "lowerdir"
	}
	return "unknown"
}

// TestMountFallbackRefusedTwice checks that when mount(2) refuses the
// stack too, the error is mount(2)'s, says what the new API answered
// first, carries the kernel's reason, and leaves nothing mounted: here
// one lower without upper, which the kernel refuses either way (Check
// would have stopped it before).
func TestMountFallbackRefusedTwice(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	spec := layer.Spec{Lowers: mkdirs(t, filepath.Join(root, "l0")), Target: filepath.Join(root, "merged")}
	mkdirs(t, spec.Target)
	m := kernelMounter
	m.create = func(int) error { return unix.EINVAL }
	testutil.CleanupMount(t, spec.Target)
	err := m.stack(spec, nil)
	var me *MountError
	if !errors.As(err, &me) {
		t.Fatalf("stack = %v, want a *MountError", err)
	}
	t.Logf("refused twice: %v", err)
	if !strings.HasPrefix(me.Step, "mount(2)") || !strings.Contains(me.Step, "after create") || !strings.Contains(me.Step, "legacy way") {
		t.Errorf("step %q: want mount(2), after the new API's create and why", me.Step)
	}
	if !strings.Contains(err.Error(), "at least 2 lowerdir") {
		t.Errorf("error %q lacks the kernel's reason", err)
	}
	if got := mountsUnder(t, root); len(got) != 0 {
		t.Errorf("refused mount left mounts %v", got)
	}
}

// refusalEntry mounts one lower without upper in a new user namespace,
// which the kernel refuses with a reason only its log has, and prints
// the error.
const refusalEntry = "native-test-userns-refusal"

func init() {
	reexec.Register(refusalEntry, func() {
		if err := userns.MakePrivate(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		root := os.Args[1]
		spec := layer.Spec{Lowers: []string{filepath.Join(root, "l0")}, Target: filepath.Join(root, "merged"), Namespace: layer.User}
		fmt.Print(kernelMounter.stack(spec, []option{{key: "userxattr"}}))
	})
}

// TestRefusalNamesDmesgOnlyWhereReadable: as uid 65534 in a user
// namespace, where the kernel log cannot be read here, a refusal the
// kernel explains only in its log points at dmesg only where the user
// may read it (kernel.dmesg_restrict = 0); elsewhere it says the log is
// root's.
func TestRefusalNamesDmesgOnlyWhereReadable(t *testing.T) {
	if !testutil.InNobodyChild() {
		testutil.RunAsNobody(t, "OVL_TEST_DIR="+testutil.SharedDir(t))
		return
	}
	root := os.Getenv("OVL_TEST_DIR")
	mkdirs(t, filepath.Join(root, "l0"), filepath.Join(root, "merged"))
	out, err := userns.Command(refusalEntry, root).CombinedOutput()
	if err != nil {
		t.Fatalf("in a user namespace: %v: %s", err, out)
	}
	t.Logf("refused: %s", out)
	restricted, rerr := os.ReadFile("/proc/sys/kernel/dmesg_restrict")
	if rerr != nil {
		t.Skipf("no kernel.dmesg_restrict here: %v", rerr)
	}
	readable := strings.TrimSpace(string(restricted)) == "0"
	if !strings.Contains(string(out), "kernel log") {
		t.Errorf("error %q does not say where the kernel's reason is", out)
	}
	if got := strings.Contains(string(out), "dmesg |"); got != readable {
		t.Errorf("error %q: dmesg advice %v, want %v (kernel.dmesg_restrict = %s)", out, got, readable, strings.TrimSpace(string(restricted)))
	}
}
