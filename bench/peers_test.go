package bench

import (
	"errors"
	"strings"
	"testing"
)

func fakeLookPath(have ...string) LookPath {
	return func(name string) (string, error) {
		for _, h := range have {
			if h == name {
				return "/usr/bin/" + name, nil
			}
		}
		return "", errors.New("not found")
	}
}

func TestPeersDetection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		have   []string
		root   bool
		down   map[string]string // peer -> part of the reason
		wantOK []string
	}{
		{"everything as root", []string{"fuse-overlayfs", "unionfs", "cp"}, true, nil,
			[]string{PeerKernel, PeerFuseOverlayfs, PeerUnionfsFuse, PeerCopy}},
		{"unionfs-fuse missing", []string{"fuse-overlayfs", "cp"}, true,
			map[string]string{PeerUnionfsFuse: "Debian package unionfs-fuse"},
			[]string{PeerKernel, PeerFuseOverlayfs, PeerCopy}},
		{"nothing installed", nil, true,
			map[string]string{PeerFuseOverlayfs: "Debian package fuse-overlayfs", PeerUnionfsFuse: "not installed", PeerCopy: "coreutils"},
			[]string{PeerKernel}},
		{"not root", []string{"fuse-overlayfs", "unionfs", "cp"}, false,
			map[string]string{PeerKernel: "needs root", PeerFuseOverlayfs: "root", PeerUnionfsFuse: "root"},
			[]string{PeerCopy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := Peers(fakeLookPath(tc.have...), tc.root)
			if len(ps) != 4 {
				t.Fatalf("%d peers, want all 4 reported (missing ones as unavailable)", len(ps))
			}
			var ok []string
			for _, p := range ps {
				if !p.Peer {
					t.Errorf("%s is not marked as a peer", p.Name)
				}
				if p.Unavailable == nil {
					ok = append(ok, p.Name)
					continue
				}
				want, expected := tc.down[p.Name]
				if !expected {
					t.Errorf("%s unavailable: %v", p.Name, p.Unavailable)
				} else if !strings.Contains(p.Unavailable.Error(), want) {
					t.Errorf("%s: reason %q does not say %q", p.Name, p.Unavailable, want)
				}
			}
			if strings.Join(ok, ",") != strings.Join(tc.wantOK, ",") {
				t.Errorf("available %v, want %v", ok, tc.wantOK)
			}
		})
	}
	for _, p := range Peers(fakeLookPath(), true) {
		if p.Name == PeerFuseOverlayfs && !errors.Is(p.Unavailable, ErrMissing) {
			t.Errorf("missing fuse-overlayfs: %v is not ErrMissing", p.Unavailable)
		}
	}
}

func TestKernelOptions(t *testing.T) {
	got, err := kernelOptions(Stack{Lowers: []string{"/l/a:b", "/l/c"}, Upper: "/u", Work: "/w"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `lowerdir=/l/a\:b:/l/c,upperdir=/u,workdir=/w`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := kernelOptions(Stack{Lowers: []string{"/l/a,b"}}); err == nil || !strings.Contains(err.Error(), "/l/a,b") {
		t.Errorf("a comma in a path: err %v, want one naming the path", err)
	}
}

func TestUnionfsBranches(t *testing.T) {
	got, err := unionfsBranches(Stack{Lowers: []string{"/l/top", "/l/bottom"}, Upper: "/u", Work: "/w"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "/u=RW:/l/top=RO:/l/bottom=RO"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := unionfsBranches(Stack{Lowers: []string{"/l/a=b"}}); err == nil {
		t.Error("a '=' in a branch path was accepted")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b/c\011d`); got != "/a b/c\td" {
		t.Errorf("got %q", got)
	}
}

func TestJanitor(t *testing.T) {
	var j Janitor
	var order []string
	j.Add("first", func() error { order = append(order, "first"); return nil })
	now := j.Add("second", func() error { order = append(order, "second"); return errors.New("busy") })
	j.Add("third", func() error { order = append(order, "third"); return nil })
	if err := now(); err == nil || !strings.Contains(err.Error(), "second: busy") {
		t.Errorf("undo error %v does not name what failed", err)
	}
	if err := now(); err != nil {
		t.Errorf("second call ran the undo again: %v", err)
	}
	if err := j.Clean(); err != nil {
		t.Errorf("Clean: %v", err)
	}
	if got := strings.Join(order, ","); got != "second,third,first" {
		t.Errorf("undo order %s, want second (run early), then newest first", got)
	}
	if err := j.Clean(); err != nil || len(order) != 3 {
		t.Errorf("second Clean ran undos again: %v", order)
	}
}
