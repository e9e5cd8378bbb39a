package main

import (
	"reflect"
	"testing"

	"github.com/ovl-dev/ovl/layer"
)

func TestDropinArgs(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{[]string{"-o", "lowerdir=/a,upperdir=/u,workdir=/w", "/mnt"}, true},
		{[]string{"-olowerdir=/a", "/mnt"}, true},
		{[]string{"overlay", "/mnt", "-o", "lowerdir=/a"}, true},
		{[]string{"mount", "--backend", "fuse", "/mnt"}, false},
		{[]string{"mount", "/mnt", "-o", "lowerdir=/a"}, false},
		{[]string{"check"}, false},
		{[]string{"--debug", "mount", "-o"}, false},
		{nil, false},
	}
	for _, c := range cases {
		if got := dropinArgs(c.args); got != c.want {
			t.Errorf("dropinArgs(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestDropinParse(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		want    layer.Spec
		fg      bool
		ignored []string
	}{
		{"mount_program", []string{"-o", "lowerdir=/l/a:/l/b,upperdir=/u,workdir=/w,fsync=0,xattr_permissions=2", "/mnt"},
			layer.Spec{Lowers: []string{"/l/a", "/l/b"}, Upper: "/u", Work: "/w", Target: "/mnt"}, false, []string{"fsync=0", "xattr_permissions=2"}},
		{"mount helper", []string{"overlay", "/mnt", "-o", "rw,dev,suid,lowerdir=/l,allow_other"},
			layer.Spec{Lowers: []string{"/l"}, Target: "/mnt", Options: layer.Options{AllowOther: true}}, false, []string{"dev", "suid"}},
		{"read-only, foreground, escaped comma", []string{"-f", "-o", `lowerdir=/l\,x,upperdir=/u,workdir=/w,ro,volatile,userxattr`, "/mnt"},
			layer.Spec{Lowers: []string{"/l,x"}, Upper: "/u", Work: "/w", Target: "/mnt", ReadOnly: true, Namespace: layer.User, Options: layer.Options{Volatile: true}}, true, nil},
		{"several -o", []string{"-o", "lowerdir=/l", "-o", "upperdir=/u", "-o", "workdir=/w", "/mnt"},
			layer.Spec{Lowers: []string{"/l"}, Upper: "/u", Work: "/w", Target: "/mnt"}, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := dropinParse(c.args)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(o.spec, c.want) {
				t.Errorf("spec %+v\n want %+v", o.spec, c.want)
			}
			if o.foreground != c.fg {
				t.Errorf("foreground %v, want %v", o.foreground, c.fg)
			}
			if !reflect.DeepEqual(o.ignored, c.ignored) {
				t.Errorf("ignored %q, want %q", o.ignored, c.ignored)
			}
		})
	}
}

func TestDropinParseErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-o", "upperdir=/u,workdir=/w", "/mnt"},
		{"-o", "lowerdir=/l"},
		{"-o", "lowerdir=/l", "/a", "/b", "/c"},
		{"-o"},
	} {
		if _, err := dropinParse(args); err == nil {
			t.Errorf("dropinParse(%q) succeeded, want an error", args)
		}
	}
}
