package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// smallDiffCases each do something through the mount and return what a
// program (or the upper layer) then shows; TestSmallDifferences runs
// them on kernel overlay and on fusefs in both modes and wants the same.
var smallDiffCases = []struct {
	name string
	do   func(t *testing.T, s *stack) string
}{
	{"create-setuid", func(t *testing.T, s *stack) string {
		// open(O_CREAT) with set-user-ID and set-group-ID bits: the
		// new file keeps them (the daemon's chown must not drop them).
		var out string
		for _, mode := range []uint32{0o4755, 0o2755, 0o6711} {
			p := filepath.Join(s.target, fmt.Sprintf("new-%o", mode))
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, mode)
			mustDo(t, err)
			unix.Close(fd)
			var st unix.Stat_t
			mustDo(t, unix.Lstat(p, &st))
			out += fmt.Sprintf("%o:%o ", mode, st.Mode&0o7777)
		}
		for _, mode := range []uint32{0o4755, 0o2755} {
			p := filepath.Join(s.target, fmt.Sprintf("node-%o", mode))
			mustDo(t, unix.Mknod(p, unix.S_IFREG|mode, 0))
			var st unix.Stat_t
			mustDo(t, unix.Lstat(p, &st))
			out += fmt.Sprintf("mknod %o:%o ", mode, st.Mode&0o7777)
		}
		return out
	}},
	{"truncate-same-size", func(t *testing.T, s *stack) string {
		// ftruncate and truncate to the size a lower file has (both
		// copy it up), and to the size an upper file has.
		var out string
		old := time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)
		names := []string{"f", "g", "e1", "e2", "e3"}
		for _, f := range names {
			if f[0] == 'e' {
				mustDo(t, os.WriteFile(filepath.Join(s.lowers[0], f), nil, 0o644))
			}
			mustDo(t, os.Chtimes(filepath.Join(s.lowers[0], f), old, old))
		}
		for i, f := range append(names, "f", "g", "e1", "e2", "e3") {
			p := filepath.Join(s.target, f)
			var st unix.Stat_t
			mustDo(t, unix.Lstat(p, &st))
			how := []string{"ftruncate", "truncate", "O_TRUNC"}[i%3]
			switch how {
			case "ftruncate":
				fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
				mustDo(t, err)
				mustDo(t, unix.Ftruncate(fd, st.Size))
				unix.Close(fd)
			case "truncate":
				mustDo(t, unix.Truncate(p, st.Size))
			default:
				if st.Size > 0 {
					continue
				}
				fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
				mustDo(t, err)
				unix.Close(fd)
			}
			var after unix.Stat_t
			mustDo(t, unix.Lstat(p, &after))
			out += fmt.Sprintf("%s %s: size %d mtime changed %v; ", how, f, after.Size, after.Mtim != st.Mtim)
		}
		return out
	}},
	{"file-flags", func(t *testing.T, s *stack) string {
		// lsattr and chattr: FS_IOC_GETFLAGS, FS_IOC_SETFLAGS and
		// FS_IOC_FSGETXATTR reach the file (copied up to change it).
		p := filepath.Join(s.target, "f")
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		mustDo(t, err)
		defer unix.Close(fd)
		var out string
		flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		out += fmt.Sprintf("getflags %#x %v; ", flags, err)
		err = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsNodumpFl))
		out += fmt.Sprintf("setflags %v; ", err)
		flags, err = unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		out += fmt.Sprintf("getflags %#x %v; ", flags, err)
		var fsx [fsxattrSize]byte
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIocFsGetXattr, uintptr(unsafe.Pointer(&fsx[0])))
		out += fmt.Sprintf("fsgetxattr %x %v; ", fsx[:4], errnoErr(errno))
		var st unix.Stat_t
		_, uerr := os.Lstat(filepath.Join(s.upper, "f"))
		mustDo(t, unix.Lstat(p, &st))
		return out + fmt.Sprintf("copied up %v", uerr == nil)
	}},
	{"mkdir-not-opaque", func(t *testing.T, s *stack) string {
		// A plain mkdir in a merged directory is not opaque; one over a
		// whiteout is.
		mustDo(t, os.Mkdir(filepath.Join(s.target, "d", "new"), 0o755))
		mustDo(t, os.Remove(filepath.Join(s.target, "d", "sub")))
		mustDo(t, os.Mkdir(filepath.Join(s.target, "d", "sub"), 0o755))
		var out string
		for _, n := range []string{"new", "sub"} {
			_, err := layer.GetXattr(filepath.Join(s.upper, "d", n), layer.Trusted.Xattr(layer.KeyOpaque))
			out += fmt.Sprintf("%s opaque %v; ", n, err == nil)
		}
		return out
	}},
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// TestSmallDifferences checks, against kernel overlay, small things a
// program may notice: set-id bits of a new file, times after a truncate
// that keeps the size, file flags (lsattr/chattr), and which new
// directories are opaque.
func TestSmallDifferences(t *testing.T) {
	for _, c := range smallDiffCases {
		t.Run(c.name, func(t *testing.T) {
			sameAsKernel(t, func(t *testing.T, s *stack) {
				writeFiles(t, s.lowers[0], map[string]string{"f": "lower data", "g": "more", "d/": "", "d/sub/": ""})
				writeFiles(t, s.upper, map[string]string{"d/": ""})
			}, c.do)
		})
	}
}

// fsNodumpFl is FS_NODUMP_FL (chattr +d), which a file's owner may set.
const fsNodumpFl = 0x40
