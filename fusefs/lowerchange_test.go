package fusefs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// lowerChangeCases each do something through the mount to a lower file
// and return what a program then sees of it; TestLowerFileChanges runs
// them on kernel overlay and on fusefs in both modes and wants the same.
var lowerChangeCases = []struct {
	name string
	do   func(t *testing.T, s *stack) string
}{
	{"write-after-unlink", func(t *testing.T, s *stack) string {
		// Open the lower file for writing, unlink it, write through the
		// descriptor: the write lands in the (now nameless) file.
		p := filepath.Join(s.target, "f")
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
		mustDo(t, err)
		defer unix.Close(fd)
		mustDo(t, os.Remove(p))
		_, werr := unix.Pwrite(fd, []byte("WRITTEN"), 2)
		var st unix.Stat_t
		mustDo(t, unix.Fstat(fd, &st))
		buf := make([]byte, 64)
		n, rerr := unix.Pread(fd, buf, 0)
		return describe(werr, rerr, buf[:max(n, 0)], &st)
	}},
	{"append-after-lower-grew", func(t *testing.T, s *stack) string {
		// The lower file grows in its layer after the mount has read
		// it; an append through the mount goes at its new end.
		p := filepath.Join(s.target, "f")
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		appendTo(t, filepath.Join(s.lowers[0], "f"), " and more in the layer")
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		mustDo(t, err)
		_, werr := f.Write([]byte("X"))
		mustDo(t, f.Close())
		b, rerr := os.ReadFile(p)
		var st unix.Stat_t
		mustDo(t, unix.Lstat(p, &st))
		return describe(werr, rerr, b, &st)
	}},
	{"copy-up-after-lower-changed", func(t *testing.T, s *stack) string {
		// The lower file changes in place (grows, then shrinks) after
		// the mount has looked it up; a chmod copies what is there now.
		p := filepath.Join(s.target, "f")
		var st unix.Stat_t
		mustDo(t, unix.Lstat(p, &st))
		appendTo(t, filepath.Join(s.lowers[0], "f"), " grown in the layer")
		mustDo(t, os.Chmod(p, 0o600))
		up, err := os.ReadFile(filepath.Join(s.upper, "f"))
		mustDo(t, err)
		b, rerr := os.ReadFile(p)
		mustDo(t, unix.Lstat(p, &st))
		return describe(nil, rerr, b, &st) + " upper " + string(up)
	}},
}

func appendTo(t *testing.T, p, data string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	mustDo(t, err)
	_, err = f.Write([]byte(data))
	mustDo(t, err)
	mustDo(t, f.Close())
}

func describe(werr, rerr error, data []byte, st *unix.Stat_t) string {
	return "write: " + errString(werr) + "; read: " + errString(rerr) + " " + string(data) +
		"; size " + itoa(st.Size) + " nlink " + itoa(int64(st.Nlink)) + " mode " + itoa(int64(st.Mode))
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestLowerFileChanges checks what kernel overlay does with a lower file
// written after its name is gone, or changed in its layer while mounted,
// against fusefs in both modes.
func TestLowerFileChanges(t *testing.T) {
	for _, c := range lowerChangeCases {
		t.Run(c.name, func(t *testing.T) {
			sameAsKernel(t, func(t *testing.T, s *stack) {
				writeFiles(t, s.lowers[0], map[string]string{"f": "lower data"})
			}, c.do)
		})
	}
}
