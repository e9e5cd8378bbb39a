package kernelsim

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// rule fails system call nr with errno when every cond holds.
type rule struct {
	nr    int
	errno unix.Errno
	conds []cond
}

// cond is one test of a system call argument: (word & mask) == val, on
// the argument's low 32 bits, or its high ones.
type cond struct {
	arg       int
	high      bool
	mask, val uint32
}

// argEq holds when the low 32 bits of argument i are v (an int
// argument; see argHighZero for the rest of a 64-bit one).
func argEq(i int, v uint32) cond { return cond{arg: i, mask: ^uint32(0), val: v} }

// argMask holds when the low 32 bits of argument i, masked, are v.
func argMask(i int, mask, v uint32) cond { return cond{arg: i, mask: mask, val: v} }

// argHighZero holds when the high 32 bits of argument i are zero.
func argHighZero(i int) cond { return cond{arg: i, high: true, mask: ^uint32(0)} }

// Offsets into struct seccomp_data (linux/seccomp.h): nr, arch, the
// instruction pointer, then six 64-bit arguments.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// auditArch is this architecture's AUDIT_ARCH_* value, which a filter
// checks first: a system call number means another call in another ABI.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("kernelsim: no filter for %s", runtime.GOARCH)
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// program compiles rules into a classic BPF seccomp program: a system
// call of this ABI that matches a rule returns its errno, anything else
// is allowed.
func program(rules []rule) ([]unix.SockFilter, error) {
	arch, err := auditArch()
	if err != nil {
		return nil, err
	}
	const (
		ldW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeqK  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		andK  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		retK  = unix.BPF_RET | unix.BPF_K
		allow = unix.SECCOMP_RET_ALLOW
	)
	// Each rule is a block ending in its return; a test that fails jumps
	// to the next block, which loads the number again.
	var blocks [][]unix.SockFilter
	for _, r := range rules {
		var b []unix.SockFilter
		var fails []int // indexes of jumps whose false branch leaves the block
		b = append(b, stmt(ldW, offNr))
		fails = append(fails, len(b))
		b = append(b, jump(jeqK, uint32(r.nr), 0, 0))
		for _, c := range r.conds {
			off := uint32(offArgs + 8*c.arg)
			if c.high {
				off += 4 // little-endian: the high half follows
			}
			b = append(b, stmt(ldW, off))
			if c.mask != ^uint32(0) {
				b = append(b, stmt(andK, c.mask))
			}
			fails = append(fails, len(b))
			b = append(b, jump(jeqK, c.val, 0, 0))
		}
		b = append(b, stmt(retK, unix.SECCOMP_RET_ERRNO|uint32(r.errno)))
		for _, i := range fails {
			b[i].Jf = uint8(len(b) - i - 1)
		}
		blocks = append(blocks, b)
	}
	prog := []unix.SockFilter{stmt(ldW, offArch), jump(jeqK, arch, 0, 0)}
	for _, b := range blocks {
		prog = append(prog, b...)
	}
	prog = append(prog, stmt(retK, allow))
	if dist := len(prog) - 2 - 1; dist > 255 {
		return nil, fmt.Errorf("kernelsim: filter of %d instructions is too long for a jump", len(prog))
	} else {
		prog[1].Jf = uint8(dist)
	}
	return prog, nil
}
