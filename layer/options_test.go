package layer_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/testutil"
	"github.com/ovl-dev/ovl/layer"
)

// hostilePaths are directory names the option syntax must carry: every
// character it splits on or escapes with, and a newline.
var hostilePaths = []string{
	"plain",
	"co:lon",
	"two::colons",
	"com,ma",
	`back\slash`,
	`trailing\`,
	"eq=uals",
	"new\nline",
	`all:,\=` + "\n",
	":lead",
	"trail:",
	",",
}

func TestParseOptions(t *testing.T) {
	cases := []struct {
		in   string
		want layer.MountOptions
	}{
		{`lowerdir=/a\:b:/c`, layer.MountOptions{Lowers: []string{"/a:b", "/c"}}},
		{`lowerdir=/a\,b:/c\\d,upperdir=/u\,1,workdir=/w\:2`,
			layer.MountOptions{Lowers: []string{"/a,b", `/c\d`}, Upper: "/u,1", Work: "/w:2"}},
		{"lowerdir=/l1:/l2::/d1::/d2", layer.MountOptions{Lowers: []string{"/l1", "/l2"}, DataLowers: []string{"/d1", "/d2"}}},
		// podman's empty option, a second lowerdir replacing the first.
		{"lowerdir=/x,lowerdir=/l,upperdir=/u,workdir=/w,,volatile", layer.MountOptions{Lowers: []string{"/l"}, Upper: "/u", Work: "/w",
			Features: layer.Options{Volatile: true}}},
		{"lowerdir=,lowerdir+=/a:b,lowerdir+=/c\\,d,datadir+=/e", layer.MountOptions{Lowers: []string{"/a:b", `/c\,d`}, DataLowers: []string{"/e"}}},
		{"lowerdir=/l,index=on,metacopy=on,redirect_dir=on,xino=auto,userxattr,ro", layer.MountOptions{Lowers: []string{"/l"},
			ReadOnly: true, UserXattr: true, Features: layer.Options{Index: true, Metacopy: true, RedirectDir: true, Xino: true}}},
		{"lowerdir=/l,index=off,redirect_dir=nofollow,xino=off,ro,rw", layer.MountOptions{Lowers: []string{"/l"}}},
		{"lowerdir=/l,uidmapping=:0:1:1002:1002:0:1,gidmapping=0:100000:65536,allow_other", layer.MountOptions{Lowers: []string{"/l"},
			UIDMapping: []layer.IDMapping{{0, 1, 1002}, {1002, 0, 1}}, GIDMapping: []layer.IDMapping{{0, 100000, 65536}},
			Features: layer.Options{AllowOther: true}}},
		{"lowerdir=/l,nodev,uuid=null,default_permissions,squash_to_uid=1000", layer.MountOptions{Lowers: []string{"/l"},
			Other: []string{"nodev", "uuid=null", "default_permissions", "squash_to_uid=1000"}}},
	}
	for _, c := range cases {
		got, err := layer.ParseOptions(c.in)
		if err != nil {
			t.Errorf("ParseOptions(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseOptions(%q)\n got  %#v\n want %#v", c.in, got, c.want)
		}
	}
}

func TestParseOptionsErrors(t *testing.T) {
	cases := []struct {
		in      string
		want    error
		mention string
	}{
		{"lowerdir=/l,nosuchopt", layer.ErrUnknownOption, "nosuchopt"},
		{"lowerdir=/l,fsync=0", layer.ErrUnknownOption, "fsync=0"},
		{"lowerdir=/l,index", layer.ErrOptionValue, "index"},
		{"lowerdir=/l,index=yes", layer.ErrOptionValue, "index=yes"},
		{"lowerdir=/l,userxattr=on", layer.ErrOptionValue, "userxattr"},
		{"lowerdir=/l,upperdir=", layer.ErrOptionValue, "upperdir"},
		{"lowerdir=:/l", layer.ErrOptionValue, "lowerdir"},
		{"lowerdir=/l:", layer.ErrOptionValue, "lowerdir"},
		{"lowerdir=/a:::/b", layer.ErrOptionValue, "lowerdir"},
		{"lowerdir=/a::/b:/c", layer.ErrOptionValue, "data-only"},
		{"lowerdir=/a::/b,lowerdir+=/c", layer.ErrOptionValue, "data-only"},
		{"datadir+=/d", layer.ErrOptionValue, "datadir+"},
		{"lowerdir=/l,uidmapping=0:1", layer.ErrOptionValue, "uidmapping"},
		{"lowerdir=/l,uidmapping=0:1:0", layer.ErrOptionValue, "empty"},
		{"lowerdir=/l,uidmapping=0:1:x", layer.ErrOptionValue, `"x"`},
		{"lowerdir=/l,uidmapping=0:1:10:5:100:1", layer.ErrOptionValue, "overlap inside"},
		{"lowerdir=/l,gidmapping=0:1:10:100:5:1", layer.ErrOptionValue, "overlap on the host"},
		{"lowerdir=/l,gidmapping=4294967295:0:2", layer.ErrOptionValue, "past the last id"},
	}
	for _, c := range cases {
		_, err := layer.ParseOptions(c.in)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("ParseOptions(%q) = %v, want %v naming %q", c.in, err, c.want, c.mention)
		}
	}
}

// TestOptionsRoundTrip writes options holding hostile paths and reads
// them back: the same paths, in the same places.
func TestOptionsRoundTrip(t *testing.T) {
	for i := range hostilePaths {
		p := func(j int) string { return "/x/" + hostilePaths[(i+j)%len(hostilePaths)] }
		o := layer.MountOptions{
			Lowers: []string{p(0), p(1), p(2)}, DataLowers: []string{p(3)}, Upper: p(4), Work: p(5),
			UserXattr: true, Features: layer.Options{Volatile: true, Index: true},
			UIDMapping: []layer.IDMapping{{0, 1000, 1}, {1, 100000, 65536}}, Other: []string{"nodev"},
		}
		got, err := layer.ParseOptions(o.String())
		if err != nil {
			t.Errorf("ParseOptions(%q): %v", o.String(), err)
			continue
		}
		if !reflect.DeepEqual(got, o) {
			t.Errorf("round trip through %q\n got  %#v\n want %#v", o.String(), got, o)
		}
	}
}

// TestOptionsKernelReadsThem mounts kernel overlay with options written
// by MountOptions.String over directories with hostile names: the kernel
// (the oracle) must find every layer where the string says it is.
func TestOptionsKernelReadsThem(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	dir := func(name string) string {
		p := filepath.Join(base, name)
		must(t, os.MkdirAll(p, 0o755))
		return p
	}
	for i, name := range hostilePaths {
		lower0, lower1 := dir("l0-"+name), dir("l1-"+name)
		must(t, os.WriteFile(filepath.Join(lower0, "top"), []byte(name), 0o644))
		must(t, os.WriteFile(filepath.Join(lower1, "bottom"), []byte(name), 0o644))
		o := layer.MountOptions{Lowers: []string{lower0, lower1}, Upper: dir("u-" + name), Work: dir("w-" + name)}
		mnt := dir("m" + string(rune('a'+i)))
		if err := unix.Mount("overlay", mnt, "overlay", 0, o.String()); err != nil {
			t.Errorf("kernel overlay with %q: %v", o.String(), err)
			continue
		}
		must(t, os.WriteFile(filepath.Join(mnt, "new"), []byte("new"), 0o644))
		for _, f := range []string{"top", "bottom"} {
			if b, err := os.ReadFile(filepath.Join(mnt, f)); err != nil || string(b) != name {
				t.Errorf("%q: %s reads %q, %v", o.String(), f, b, err)
			}
		}
		must(t, unix.Unmount(mnt, 0))
		if _, err := os.Stat(filepath.Join(o.Upper, "new")); err != nil {
			t.Errorf("%q: the write did not land in the upper %q: %v", o.String(), o.Upper, err)
		}
	}
}

// TestParseOptionsAsTheKernel checks option strings against the kernel:
// each one ParseOptions takes, the kernel mounts with the same layers;
// each lowerdir syntax error ParseOptions refuses, the kernel refuses.
func TestParseOptionsAsTheKernel(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	for _, d := range []string{"a:b", "c", "d,e", `f\g`, "u", "w", "m"} {
		must(t, os.MkdirAll(filepath.Join(base, d), 0o755))
		must(t, os.WriteFile(filepath.Join(base, d, "in-"+strings.NewReplacer(":", "_", ",", "_", `\`, "_").Replace(d)), nil, 0o644))
	}
	t.Chdir(base)
	for _, c := range []struct {
		opts string
		ok   bool
	}{
		{`lowerdir=a\:b:c,upperdir=u,workdir=w`, true},
		{`lowerdir=d\,e:c,upperdir=u,workdir=w`, true},
		{`lowerdir=f\\g:c,upperdir=u,workdir=w,,`, true},
		{`lowerdir=c,upperdir=u,workdir=w,lowerdir=a\:b`, true},
		{`lowerdir=,lowerdir+=c,lowerdir+=a:b,upperdir=u,workdir=w`, true},
		{`lowerdir=c:,upperdir=u,workdir=w`, false},
		{`lowerdir=:c,upperdir=u,workdir=w`, false},
		{`lowerdir=c:::a\:b,upperdir=u,workdir=w`, false},
		{`lowerdir=c,upperdir=u,workdir=w,index`, false},
		{`lowerdir=c,upperdir=u,workdir=w,userxattr=on`, false},
		{`lowerdir=c,upperdir=u,workdir=w,nosuchopt`, false},
	} {
		o, perr := layer.ParseOptions(c.opts)
		must(t, os.RemoveAll(filepath.Join(base, "w", "work")))
		kerr := unix.Mount("overlay", "m", "overlay", 0, c.opts)
		if kerr == nil {
			var names []string
			ents, _ := os.ReadDir("m")
			for _, e := range ents {
				names = append(names, e.Name())
			}
			must(t, unix.Unmount("m", 0))
			var want []string
			for _, l := range append([]string{o.Upper}, o.Lowers...) {
				ents, _ := os.ReadDir(l)
				for _, e := range ents {
					want = append(want, e.Name())
				}
			}
			slices.Sort(want)
			if perr != nil || strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("%q: the kernel mounts %v; ParseOptions: %v, lowers %q", c.opts, names, perr, o.Lowers)
			}
		}
		if (kerr == nil) != c.ok || (perr == nil) != c.ok {
			t.Errorf("%q: kernel %v, ParseOptions %v; want both to %s", c.opts, kerr, perr, map[bool]string{true: "accept", false: "refuse"}[c.ok])
		}
	}
}
