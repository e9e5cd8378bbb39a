package fusefs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// stack is a layer stack on disk: lowers (top first), upper, work,
// target, all under one temporary directory.
type stack struct {
	dir    string
	lowers []string
	upper  string
	work   string
	target string
}

// newStack makes the directories of a stack with n lowers under dir.
func newStack(t testing.TB, dir string, n int) *stack {
	t.Helper()
	s := &stack{dir: dir, upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work"), target: filepath.Join(dir, "mnt")}
	for i := 0; i < n; i++ {
		s.lowers = append(s.lowers, filepath.Join(dir, "lower"+string(rune('0'+i))))
	}
	for _, d := range append(append([]string{}, s.lowers...), s.upper, s.work, s.target) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *stack) spec() layer.Spec {
	return layer.Spec{Lowers: s.lowers, Upper: s.upper, Work: s.work, Target: s.target}
}

// mountFuse mounts s with fusefs's daemon; unmounted when the test ends.
func mountFuse(t testing.TB, spec layer.Spec) backend.Mount {
	t.Helper()
	testutil.CleanupMount(t, spec.Target)
	m, err := NewBackend().Mount(context.Background(), spec)
	if err != nil {
		t.Fatalf("fusefs mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("fusefs unmount: %v", err)
		}
	})
	return m
}

// mountMode mounts spec with fusefs's daemon in one of its modes (see
// openModes); unmounted when the test ends.
func mountMode(t testing.TB, spec layer.Spec, opts Options) backend.Mount {
	t.Helper()
	testutil.CleanupMount(t, spec.Target)
	m, err := mountDaemon(context.Background(), reexec.Self(), spec, opts)
	if err != nil {
		t.Fatalf("fusefs mount: %v", err)
	}
	t.Cleanup(func() { m.Unmount() })
	return m
}

// mounter mounts a stack a test built, and names the way it does.
type mounter struct {
	name  string
	mount func(t *testing.T, s *stack)
}

// kernelAndFusefs are kernel overlay (the oracle) and fusefs in its
// default and strict-open modes.
func kernelAndFusefs() []mounter {
	ms := []mounter{{"kernel", func(t *testing.T, s *stack) { mountKernel(t, s.spec()) }}}
	for _, mode := range openModes[:2] {
		ms = append(ms, mounter{"fusefs-" + mode.name, func(t *testing.T, s *stack) { mountMode(t, s.spec(), mode.opts) }})
	}
	return ms
}

// sameAsKernel builds a fresh one-lower stack with build and mounts it
// with each of kernelAndFusefs, runs do on it, and fails unless fusefs
// gives what the kernel gives.
func sameAsKernel(t *testing.T, build func(t *testing.T, s *stack), do func(t *testing.T, s *stack) string) {
	t.Helper()
	var want string
	for _, m := range kernelAndFusefs() {
		t.Run(m.name, func(t *testing.T) {
			testutil.RequireRoot(t)
			s := newStack(t, t.TempDir(), 1)
			build(t, s)
			m.mount(t, s)
			got := do(t, s)
			if m.name == "kernel" {
				want = got
				t.Logf("kernel: %s", got)
				return
			}
			if got != want {
				t.Errorf("%s:\n got  %s\n want %s (kernel)", m.name, got, want)
			}
		})
	}
}

// writeFiles creates files under root: path -> content; a path ending
// in "/" is a directory, content "->X" a symlink to X.
func writeFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case p[len(p)-1] == '/':
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		case len(c) > 2 && c[:2] == "->":
			if err := os.Symlink(c[2:], full); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// openModes are the ways a writable stack runs: by default (the kernel
// sends no opens), and with Options.StrictOpen, with and without
// passthrough (which needs opens, root and kernel 6.9+).
var openModes = []struct {
	name string
	opts Options
}{
	{"default", Options{}},
	{"strict-open", Options{StrictOpen: true, NoPassthrough: true}},
	{"strict-open+passthrough", Options{StrictOpen: true}},
}
