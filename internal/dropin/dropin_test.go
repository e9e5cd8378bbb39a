package dropin

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want layer.Spec
		fg   bool
	}{
		{"mount_program, as podman runs it", []string{"-o", "lowerdir=/l/a:/l/b,upperdir=/u,workdir=/w,,volatile", "/mnt"},
			layer.Spec{Lowers: []string{"/l/a", "/l/b"}, Upper: "/u", Work: "/w", Target: "/mnt", LowerFormat: layer.OCIFormat, Options: layer.Options{Volatile: true}}, false},
		{"mount helper", []string{"overlay", "/mnt", "-o", "rw,dev,suid,lowerdir=/l,allow_other"},
			layer.Spec{Lowers: []string{"/l"}, Target: "/mnt", LowerFormat: layer.OCIFormat, Options: layer.Options{AllowOther: true}}, false},
		{"read-only, foreground, escaped comma", []string{"-f", "-o", `lowerdir=/l\,x,upperdir=/u,workdir=/w,ro,volatile,userxattr`, "/mnt"},
			layer.Spec{Lowers: []string{"/l,x"}, Upper: "/u", Work: "/w", Target: "/mnt", LowerFormat: layer.OCIFormat, ReadOnly: true, Namespace: layer.User, Options: layer.Options{Volatile: true}}, true},
		{"several -o", []string{"-o", "lowerdir=/l", "-o", "upperdir=/u", "-o", "workdir=/w", "/mnt"},
			layer.Spec{Lowers: []string{"/l"}, Upper: "/u", Work: "/w", Target: "/mnt", LowerFormat: layer.OCIFormat}, false},
		// The kernel's syntax, read as the kernel and 'ovl mount' read it.
		{"escaped colon", []string{"-o", `lowerdir=/a\:b:/c`, "/mnt"},
			layer.Spec{Lowers: []string{"/a:b", "/c"}, Target: "/mnt", LowerFormat: layer.OCIFormat}, false},
		{"index and metacopy reach the backend", []string{"-o", "lowerdir=/l,upperdir=/u,workdir=/w,index=on,metacopy=on,redirect_dir=on", "/mnt"},
			layer.Spec{Lowers: []string{"/l"}, Upper: "/u", Work: "/w", Target: "/mnt", LowerFormat: layer.OCIFormat, Options: layer.Options{Index: true, Metacopy: true, RedirectDir: true}}, false},
		{"debug", []string{"-d", "-o", "lowerdir=/l", "/mnt"}, layer.Spec{Lowers: []string{"/l"}, Target: "/mnt", LowerFormat: layer.OCIFormat}, true},
		// podman's ID mappings (rootless --userns=keep-id as uid 1002), in
		// fuse-overlayfs's order, the leading ':' skipped.
		{"ID mappings", []string{"-o", "lowerdir=/l,upperdir=/u,workdir=/w,,volatile,uidmapping=:0:1:1002:1002:0:1:1003:1003:64533,gidmapping=0:200000:65536", "/mnt"},
			layer.Spec{Lowers: []string{"/l"}, Upper: "/u", Work: "/w", Target: "/mnt", LowerFormat: layer.OCIFormat, Options: layer.Options{Volatile: true},
				UIDMapping: []layer.IDMapping{{Container: 0, Host: 1, Size: 1002}, {Container: 1002, Host: 0, Size: 1}, {Container: 1003, Host: 1003, Size: 64533}}, GIDMapping: []layer.IDMapping{{Container: 0, Host: 200000, Size: 65536}}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := Parse(c.args)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(o.Spec, c.want) {
				t.Errorf("spec %+v\n want %+v", o.Spec, c.want)
			}
			if o.Foreground != c.fg {
				t.Errorf("foreground %v, want %v", o.Foreground, c.fg)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	o, err := Parse([]string{"-o", "lowerdir=l/A:l/B,upperdir=ID/diff,workdir=ID/work", "ID/merged"})
	if err != nil {
		t.Fatal(err)
	}
	want := layer.Spec{Lowers: []string{filepath.Join(dir, "l/A"), filepath.Join(dir, "l/B")}, Upper: filepath.Join(dir, "ID/diff"),
		Work: filepath.Join(dir, "ID/work"), Target: filepath.Join(dir, "ID/merged"), Namespace: o.Spec.Namespace,
		LowerFormat: layer.OCIFormat}
	if !reflect.DeepEqual(o.Spec, want) {
		t.Errorf("spec %+v\n want %+v", o.Spec, want)
	}
}

func TestParseErrors(t *testing.T) {
	realRoot := os.Geteuid() == 0 && !userns.InUserNamespace()
	cases := []struct {
		args    []string
		mention string // what the error must name
	}{
		{[]string{"-o", "upperdir=/u,workdir=/w", "/mnt"}, "lowerdir"},
		{[]string{"-o", "lowerdir=/l"}, "MOUNTPOINT"},
		{[]string{"-o", "lowerdir=/l", "/a", "/b", "/c"}, "MOUNTPOINT"},
		{[]string{"-o"}, "-o needs a value"},
		// Nothing is ignored: an unknown option or flag is named.
		{[]string{"-o", "lowerdir=/l,fsync=0", "/mnt"}, "fsync=0"},
		{[]string{"-o", "lowerdir=/l,xattr_permissions=2", "/mnt"}, "xattr_permissions=2"},
		{[]string{"--nosuch", "-o", "lowerdir=/l", "/mnt"}, "--nosuch"},
		{[]string{"-o", "lowerdir=/l,noexec", "/mnt"}, "noexec"},
		{[]string{"-o", "lowerdir=/l,squash_to_uid=1000", "/mnt"}, "squash_to_uid=1000"},
		// As the kernel: no empty layer, no bad value.
		{[]string{"-o", "lowerdir=/a::/b:/c", "/mnt"}, "data-only"},
		{[]string{"-o", "lowerdir=/a:", "/mnt"}, "lowerdir"},
		{[]string{"-o", "lowerdir=/a,index=maybe", "/mnt"}, "index=maybe"},
		// podman's ID mappings: a bad one is named.
		{[]string{"-o", "lowerdir=/l,uidmapping=0:1", "/mnt"}, "uidmapping=0:1"},
		{[]string{"-o", "lowerdir=/l,gidmapping=0:1:x", "/mnt"}, "gidmapping=0:1:x"},
		{[]string{"-o", "lowerdir=/l,uidmapping=0:100:10:5:200:1", "/mnt"}, "uidmapping=0:100:10:5:200:1"},
		{[]string{"-o", "lowerdir=/l,gidmapping=0:1:0", "/mnt"}, "gidmapping=0:1:0"},
	}
	if realRoot {
		cases = append(cases, struct {
			args    []string
			mention string
		}{[]string{"-o", "lowerdir=/l,nodev", "/mnt"}, "nodev"})
	}
	for _, c := range cases {
		_, err := Parse(c.args)
		if err == nil || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("Parse(%q) = %v, want an error naming %q", c.args, err, c.mention)
		}
	}
}
