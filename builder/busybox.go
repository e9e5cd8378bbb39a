package builder

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"time"
)

// BusyboxApplets are the commands WriteBusyboxTar links to busybox.
var BusyboxApplets = []string{"sh", "ls", "cat", "echo", "mkdir", "rm", "touch", "cp", "mv", "ln",
	"chmod", "chown", "true", "false", "sleep", "test", "grep", "sed", "find", "id", "env", "head",
	"seq", "wc", "sort", "stat", "tar", "printf", "dd", "uname", "whoami"}

// WriteBusyboxTar writes to dst a gzipped tarball of a minimal root
// filesystem around the static busybox binary bb: /bin/busybox with a
// symlink per applet, /etc with passwd and group, and the directories a
// container runs with (/proc, /sys, /dev, /tmp, /run, /root, /work).
// The test suites and the demo's example project start from it (the
// binary comes from the host's busybox-static; nothing is downloaded).
func WriteBusyboxTar(dst string, bb []byte) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	mtime := time.Unix(1700000000, 0)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime = mtime
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	dirs := []struct {
		name string
		mode int64
	}{{"./", 0o755}, {"bin/", 0o755}, {"etc/", 0o755}, {"tmp/", 0o1777}, {"root/", 0o700}, {"work/", 0o755}, {"var/", 0o755}, {"var/cache/", 0o755},
		{"proc/", 0o755}, {"sys/", 0o755}, {"dev/", 0o755}, {"run/", 0o755}}
	for _, d := range dirs {
		if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode}, nil); err != nil {
			return err
		}
	}
	if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))}, bb); err != nil {
		return err
	}
	for _, a := range BusyboxApplets {
		if err := add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":           "root:x:0:\nnogroup:x:65534:\n",
		"var/cache/index.dat": "cached data\n",
	}
	for _, name := range []string{"etc/group", "etc/passwd", "var/cache/index.dat"} {
		body := []byte(files[name])
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
