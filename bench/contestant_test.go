package bench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/testutil"
)

type emptyMount struct{ dir string }

func (m emptyMount) Dir() string    { return m.dir }
func (m emptyMount) Unmount() error { return nil }

func TestProbe(t *testing.T) {
	broken := &Contestant{Name: "broken", mount: func(context.Context, Stack) (Mounted, error) {
		return nil, errors.New("no /dev/fuse")
	}}
	hollow := &Contestant{Name: "hollow", mount: func(_ context.Context, s Stack) (Mounted, error) {
		return emptyMount{s.Target}, nil // shows nothing of the lower
	}}
	down := &Contestant{Name: "down", Unavailable: ErrMissing}
	dir := t.TempDir()
	for _, c := range []*Contestant{broken, hollow, down} {
		c.Probe(context.Background(), dir)
	}
	if broken.Unavailable == nil || !strings.Contains(broken.Unavailable.Error(), "no /dev/fuse") {
		t.Errorf("broken: %v, want its mount error", broken.Unavailable)
	}
	if hollow.Unavailable == nil || !strings.Contains(hollow.Unavailable.Error(), "read through the mount") {
		t.Errorf("hollow: %v, want a failed read through the mount", hollow.Unavailable)
	}
	if !errors.Is(down.Unavailable, ErrMissing) {
		t.Errorf("an unavailable contestant's reason changed: %v", down.Unavailable)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("probes left %d entries behind", len(ents))
	}
}

// TestProbePeers mounts each installed peer once through the probe: the
// same code path the bench uses, checked against what the peer shows.
func TestProbePeers(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	for _, c := range Peers(exec.LookPath, true) {
		t.Run(c.Slug(), func(t *testing.T) {
			if errors.Is(c.Unavailable, ErrMissing) {
				t.Skipf("%v", c.Unavailable)
			}
			c.Probe(context.Background(), dir)
			if c.Unavailable != nil {
				t.Fatalf("%s does not work: %v", c.Name, c.Unavailable)
			}
			if left, _ := MountsUnder(dir); len(left) != 0 {
				t.Fatalf("mounts left behind: %q", left)
			}
		})
	}
}

func TestSlug(t *testing.T) {
	for name, want := range map[string]string{"cp -a": "cp-a", "ovl fuse no-pt": "ovl-fuse-no-pt", "kernel overlay": "kernel-overlay", "x (y)": "x-y"} {
		if got := (&Contestant{Name: name}).Slug(); got != want {
			t.Errorf("Slug(%q) = %q, want %q", name, got, want)
		}
	}
}
