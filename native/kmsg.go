package native

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// kmsgCursor remembers where the kernel log ended before a mount, so that
// the overlayfs lines logged by a refused mount can be put in its error.
// Overlayfs reports most refusals (conflicting options, unsupported upper
// filesystems, the two-lower minimum) with pr_err, which reaches only the
// kernel log, not the fs context. Reading the log needs privilege
// (kernel.dmesg_restrict); without it the cursor is empty and errors
// point at dmesg instead. Another overlay mount failing at the same
// moment could add its lines too, so they are labelled as the log's.
type kmsgCursor struct{ fd int }

// openKmsg opens /dev/kmsg at its end; a nil cursor when that fails.
func openKmsg() *kmsgCursor {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil
	}
	return &kmsgCursor{fd: fd}
}

func (k *kmsgCursor) close() {
	if k != nil {
		unix.Close(k.fd)
	}
}

// overlayLines returns the "overlayfs: ..." records logged since the
// cursor was opened, without their prefix fields.
func (k *kmsgCursor) overlayLines() []string {
	if k == nil {
		return nil
	}
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // records were overwritten; the next read goes on
		}
		if err != nil || n <= 0 {
			return out
		}
		// "prio,seq,usec,flags;message\n" and continuation lines.
		rec := string(buf[:n])
		_, msg, ok := strings.Cut(rec, ";")
		if !ok {
			continue
		}
		msg, _, _ = strings.Cut(msg, "\n")
		if strings.HasPrefix(msg, "overlayfs: ") {
			out = append(out, "dmesg: "+msg)
		}
	}
}
