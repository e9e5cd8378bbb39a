package layer

import (
	"bytes"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// ListXattrs returns the names of the xattrs of the file at path, not
// following a symlink at its end: none on a filesystem without xattrs
// (ENOTSUP). A list that grows between sizing and reading is read again.
// Errors are *os.PathError. ovl's one reader of xattr lists: layers,
// copies, the FUSE union and the tests' tree listings call it.
func ListXattrs(path string) ([]string, error) {
	for {
		size, err := unix.Llistxattr(path, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: path, Err: err}
		}
		if size == 0 {
			return nil, nil
		}
		buf := make([]byte, size)
		size, err = unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: path, Err: err}
		}
		var names []string
		for _, n := range bytes.Split(buf[:size], []byte{0}) {
			if len(n) > 0 {
				names = append(names, string(n))
			}
		}
		return names, nil
	}
}

// GetXattr reads the xattr name of the file at path whole, not following
// a symlink at its end; a value that grows between sizing and reading is
// read again. Errors are *os.PathError (ENODATA: no such xattr).
func GetXattr(path, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		buf := make([]byte, size)
		size, err = unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + name, Path: path, Err: err}
		}
		return buf[:size], nil
	}
}
